package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// NewCACommand is `dev ca`: the cluster CA (status, rotate) and the local
// HTTPS CA (export).
func NewCACommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The cluster's CAs: the cluster CA (status, rotate) and the local HTTPS CA (export)",
	}
	cmd.AddCommand(newCAStatusCommand(g), newCARotateCommand(g))
	cmd.AddCommand(&cobra.Command{
		Use:   "export",
		Short: "Print the local HTTPS CA's certificate (PEM), to trust in a browser or with curl --cacert",
		Long: `Print the certificate of the cluster's local HTTPS CA. The ingress router
serves routes with tls: local (the default for hosts under .localhost) with
certificates it signs, so https://web.hello.localhost works once it is
trusted:

  dev ca export > dev-ca.pem
  curl --cacert dev-ca.pem https://web.hello.localhost/

It is not the cluster's CA: trusting it trusts no node or client
certificate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			pem, err := c.LocalCA(cmd.Context())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	})
	return cmd
}

func newCAStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster CA's fingerprint, and the progress of a rotation (dev ca rotate)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			st, err := c.CA(cmd.Context())
			if err != nil {
				return err
			}
			printCAStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
}

func printCAStatus(w io.Writer, st api.CAStatus) {
	fmt.Fprintf(w, "cluster CA  %s\n", st.Fingerprint)
	if r := st.Rotation; r != nil {
		fmt.Fprintf(w, "rotating to %s: %d of %d nodes moved", r.Fingerprint, len(r.Moved), len(r.Moved)+len(r.Waiting))
		if len(r.Waiting) > 0 {
			fmt.Fprintf(w, ", waiting for %s", strings.Join(r.Waiting, ", "))
		}
		fmt.Fprintln(w)
	}
}

type caRotateOptions struct {
	detach  bool
	timeout time.Duration
}

func newCARotateCommand(g *globals) *cobra.Command {
	var opts caRotateOptions
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Move the cluster to a new CA, without downtime",
		Long: `Make a new cluster CA and move every node to it, as Swarm's
"docker swarm ca --rotate" does. The new CA is cross-signed by the current
one, so that nodes that have moved and nodes that have not yet keep
trusting each other. Every node trusts both CAs at once and gets a
certificate of the new one within seconds; once every node has one, the
old CA is dropped. A node that is down holds the rotation up until it is
back, or removed (dev node rm).

After it, the join tokens are new (they pin the CA): get them again with
dev token. Client bundles renew themselves when they are used during the
rotation; a bundle not used until it is done must be made again
(dev token --client NAME).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCARotate(cmd.Context(), g, cmd.OutOrStdout(), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.detach, "detach", "d", false, "Start the rotation and return without waiting for it")
	cmd.Flags().DurationVar(&opts.timeout, "timeout", 5*time.Minute, "How long to wait for every node to move")
	return cmd
}

func runCARotate(ctx context.Context, g *globals, out io.Writer, opts caRotateOptions) error {
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	st, err := c.RotateCA(ctx)
	if err != nil {
		return err
	}
	if st.Rotation == nil {
		return fmt.Errorf("rotate the CA: the agent answered without the rotation it started: upgrade it (dev agent upgrade), then see dev ca status")
	}
	from, to := st.Fingerprint, st.Rotation.Fingerprint
	fmt.Fprintf(out, "rotating the cluster CA from %s to %s\n", from, to)
	// A client bundle renews now, while the old CA is still trusted.
	c = g.renewedClient(ctx, c)
	if opts.detach {
		fmt.Fprintln(out, "follow it with: dev ca status")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	var last []string
	for {
		st, err = c.CA(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("rotate the CA: not done after %s, waiting for %s; it goes on: follow it with dev ca status, and remove a node that is gone for good (dev node rm)", opts.timeout, strings.Join(last, ", "))
		case err != nil:
			return err
		case st.Rotation == nil && st.Fingerprint == to:
			fmt.Fprintf(out, "done: every node holds a certificate of %s; the old CA is no longer trusted\nthe join tokens changed (new CA, new secrets): get them with dev token (and dev token --manager)\n", to)
			return nil
		case st.Rotation == nil:
			return fmt.Errorf("rotate the CA: the cluster CA is now %s, not %s: another rotation?", st.Fingerprint, to)
		}
		if !slices.Equal(st.Rotation.Waiting, last) {
			last = st.Rotation.Waiting
			printCAStatus(out, st)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
