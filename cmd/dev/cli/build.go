package cli

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"

	"github.com/devhq/dev/cluster/agent/docker"
	"github.com/devhq/dev/cluster/api"
)

// resolveImages makes sure every service's image exists on the local Engine,
// building the services that have a build section when asked (--build) or
// when their image is missing, and records each image ID in the spec so that
// a rebuilt image changes the pod template. Nothing is deployed when an image
// is missing and cannot be built.
func resolveImages(ctx context.Context, dc *client.Client, p *api.Project, forceBuild bool, prog progress) error {
	var specs []*api.ServiceSpec // services and their sidecars
	for i := range p.Services {
		specs = append(specs, &p.Services[i])
		for j := range p.Services[i].Sidecars {
			specs = append(specs, &p.Services[i].Sidecars[j])
		}
	}
	for _, s := range specs {
		id := "service " + s.Name
		inspect, err := dc.ImageInspect(ctx, s.Image)
		missing := err != nil && cerrdefs.IsNotFound(err)
		if err != nil && !missing {
			return fmt.Errorf("inspect image %s: %w", s.Image, err)
		}
		if s.Build != nil && (forceBuild || missing) {
			prog.Set(id, "building "+s.Image, false)
			if err := buildImage(ctx, dc, s); err != nil {
				prog.Set(id, "build failed", true)
				return fmt.Errorf("build service %s: %w", s.Name, err)
			}
			prog.Set(id, "built "+s.Image, true)
			if inspect, err = dc.ImageInspect(ctx, s.Image); err != nil {
				return fmt.Errorf("inspect built image %s: %w", s.Image, err)
			}
		} else if missing {
			return fmt.Errorf("service %s: image %s is not on this Docker Engine and the service has no build section; build it, or `docker load` it (no registry is used)", s.Name, s.Image)
		}
		s.ImageID = inspect.ID
	}
	return nil
}

func buildImage(ctx context.Context, dc *client.Client, s *api.ServiceSpec) error {
	b := s.Build
	dockerfile := b.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if filepath.IsAbs(dockerfile) {
		rel, err := filepath.Rel(b.Context, dockerfile)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("dockerfile %s must be inside the build context %s", dockerfile, b.Context)
		}
		dockerfile = rel
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarContext(b.Context, pw)) }()
	defer pr.Close()
	args := map[string]*string{}
	for k, v := range b.Args {
		args[k] = &v
	}
	resp, err := dc.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        []string{s.Image},
		Dockerfile:  filepath.ToSlash(dockerfile),
		Target:      b.Target,
		BuildArgs:   args,
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{api.LabelProject: s.Project, api.LabelService: s.Name},
	})
	if err != nil {
		return fmt.Errorf("send build context %s: %w", b.Context, err)
	}
	defer resp.Body.Close()
	return docker.ReadBuildStream(resp.Body)
}

// tarContext writes dir as a tar stream, leaving out what .dockerignore
// lists (plain patterns and directory prefixes; no "!" exceptions).
func tarContext(dir string, w io.Writer) error {
	ignore, err := readDockerignore(dir)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ignored(rel, ignore) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive build context %s: %w", dir, err)
	}
	return tw.Close()
}

func readDockerignore(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	var pats []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		pats = append(pats, strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/"))
	}
	return pats, sc.Err()
}

func ignored(rel string, pats []string) bool {
	for _, p := range pats {
		if ok, _ := filepath.Match(p, rel); ok || rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}
