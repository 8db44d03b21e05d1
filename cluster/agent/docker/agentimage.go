package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// The agent's image: the dev binary FROM scratch, built on the spot (there
// is no registry). The CLI runs the agent in a container of it for a user
// who is not root. The infra containers' image (infra.go) is built by the
// same scratchImage.
const (
	AgentImageRepo    = "dev-agent"
	LabelAgent        = "dev.agent"         // "true" on the agent's container and image
	LabelAgentVersion = "dev.agent.version" // the dev version the image was built from
	agentBinaryPath   = "/dev-agent"        // the binary, in the image
)

// AgentImage builds the agent's image from the dev binary bin unless the
// engine has it, and returns its reference, tagged with the binary's
// digest: dev-agent:<12 hex digits>.
func AgentImage(ctx context.Context, cli client.APIClient, bin []byte, version string) (string, error) {
	ref := AgentImageRepo + ":" + digest(bin)
	err := scratchImage(ctx, cli, ref, []imageFile{{agentBinaryPath, bin, 0o755}},
		[]string{agentBinaryPath}, map[string]string{LabelAgent: "true", LabelAgentVersion: version})
	if err != nil {
		return "", fmt.Errorf("build agent image: %w", err)
	}
	return ref, nil
}

// digest is the first 12 hex digits of data's SHA-256: an image tag.
func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:12]
}

// imageFile is a file of an image built FROM scratch.
type imageFile struct {
	path string // absolute, in the image
	data []byte
	mode int64
}

// scratchImage builds image ref FROM scratch with files and entrypoint,
// unless the engine has it.
func scratchImage(ctx context.Context, cli client.APIClient, ref string, files []imageFile, entrypoint []string, labels map[string]string) error {
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %s: %w", ref, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dockerfile := "FROM scratch\n"
	ctxFiles := make([]imageFile, 0, len(files)+1)
	for i, f := range files {
		name := fmt.Sprintf("f%d", i)
		dockerfile += "COPY " + name + " " + f.path + "\n"
		ctxFiles = append(ctxFiles, imageFile{name, f.data, f.mode})
	}
	ep, _ := json.Marshal(entrypoint)
	dockerfile += "ENTRYPOINT " + string(ep) + "\n"
	ctxFiles = append(ctxFiles, imageFile{"Dockerfile", []byte(dockerfile), 0o644})
	for _, f := range ctxFiles {
		hdr := &tar.Header{Name: f.path, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Labels: labels,
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return ReadBuildStream(resp.Body)
}

// ReadBuildStream reads an image build's JSON progress to its end and
// returns the build's error, with the last step it printed.
func ReadBuildStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	var last string
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if msg.Error != "" {
			return fmt.Errorf("%s (last step: %s)", msg.Error, strings.TrimSpace(last))
		}
		if strings.TrimSpace(msg.Stream) != "" {
			last = msg.Stream
		}
	}
}
