package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// imagesClient is what `dev images` needs of the API.
type imagesClient interface {
	podLister
	PodImages(ctx context.Context, pod string) (api.PodImages, error)
}

var _ imagesClient = (*api.HTTPClient)(nil)

type imagesOptions struct {
	project projectFlags
	quiet   bool
	output  string
	format  string
}

// imageRow is one container's image as `dev images -o json` prints it.
type imageRow struct {
	Container  string `json:"container"` // the pod's name; a sidecar's is pod/sidecar
	Pod        string `json:"pod"`
	Project    string `json:"project"`
	Service    string `json:"service"`
	Node       string `json:"node"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	ImageID    string `json:"image_id"`
	Size       int64  `json:"size"`
}

// NewImagesCommand is `dev images`, as `docker compose images`.
func NewImagesCommand(g *globals) *cobra.Command {
	var o imagesOptions
	cmd := &cobra.Command{
		Use:   "images [SERVICE...]",
		Short: "List the images the pods' containers use, on the node of each (as docker compose images)",
		Long: "List the image of each container of the pods of the services (all without SERVICE), as the\n" +
			"Engine of the node that runs the pod has it: repository, tag, image ID and size. A pod's\n" +
			"sidecars are listed as POD/SIDECAR. Pods not placed on a node yet have no image to show.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, c, err := o.project.connectOutput(ctx, g, &o.output, o.format)
			if err != nil {
				return err
			}
			return runImages(ctx, c, project, args, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.project.register(cmd)
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "only the image IDs, each once")
	registerOutput(cmd, &o.output, &o.format, "output format: table or json")
	return cmd
}

// runImages prints the images of the placed pods of services (all
// without), pod by pod in name order; a pod whose node cannot answer is
// an error once the others are printed.
func runImages(ctx context.Context, c imagesClient, project string, services []string, o imagesOptions, stdout, stderr io.Writer) error {
	pods, err := servicePods(ctx, c, project, services, func(p api.Pod) bool { return !p.Deleting && p.Node != "" })
	if err != nil {
		return err
	}
	got, errs := eachPod(pods, "images", func(p api.Pod) (api.PodImages, error) { return c.PodImages(ctx, p.Name) })
	rows := []imageRow{}
	for i, pi := range got {
		if errs[i] != nil {
			continue
		}
		for _, ci := range pi.Containers {
			name := pi.Pod
			if ci.Container != pi.Service {
				name += "/" + ci.Container
			}
			rows = append(rows, imageRow{Container: name, Pod: pi.Pod, Project: pods[i].Project, Service: pi.Service,
				Node: pi.Node, Repository: ci.Repository, Tag: ci.Tag, ImageID: ci.ImageID, Size: ci.Size})
		}
	}
	switch {
	case o.quiet:
		var ids []string
		for _, r := range rows {
			id := strings.TrimPrefix(r.ImageID, "sha256:")
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
				fmt.Fprintln(stdout, id)
			}
		}
	case o.output == "json":
		if err := printJSON(stdout, rows); err != nil {
			return err
		}
	default:
		printImages(stdout, rows)
	}
	if len(pods) == 0 && o.output != "json" {
		fmt.Fprintln(stderr, "no pods placed on a node")
	}
	return errors.Join(errs...)
}

// printImages writes the table `docker compose images` writes, with the
// node each pod runs on: 12 digits of the image ID, decimal sizes.
func printImages(w io.Writer, rows []imageRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tNODE\tREPOSITORY\tTAG\tIMAGE ID\tSIZE")
	for _, r := range rows {
		id := strings.TrimPrefix(r.ImageID, "sha256:")
		if len(id) > 12 {
			id = id[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Container, r.Node, r.Repository, r.Tag, id, decimalSize(uint64(max(r.Size, 0))))
	}
	tw.Flush()
}
