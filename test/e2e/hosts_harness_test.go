package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
)

// TestHostsHarness checks the multi-host harness itself: two hosts whose
// engines answer and hold the test image, reach each other by IP (host and
// bridge networking), are partitioned by Cut and healed by Restore, and leave
// nothing behind.
func TestHostsHarness(t *testing.T) {
	start := time.Now()
	var prefix string
	var engines []int
	t.Run("hosts", func(t *testing.T) {
		hosts := newHosts(t, 2)
		h1, h2 := hosts[0], hosts[1]
		prefix = strings.TrimSuffix(h1.id, h1.Name)
		for _, h := range hosts {
			engines = append(engines, h.cmd.Process.Pid)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		for _, h := range hosts {
			info, err := h.Docker.Info(ctx)
			if err != nil {
				t.Fatalf("%s: engine info: %v", h.Name, err)
			}
			if _, err := h.Docker.ImageInspect(ctx, testImage); err != nil {
				t.Fatalf("%s: test image: %v", h.Name, err)
			}
			t.Logf("%s: %s at %s, engine %s, storage %s", h.Name, h.IP, h.DockerHost, info.ServerVersion, info.Driver)

			// Command runs in the host's namespace with its DOCKER_HOST.
			out, err := h.Command([]string{"DEVTEST_X=1"}, "sh", "-c", `echo "$DOCKER_HOST $DEVTEST_X"; ip -4 -o addr show dev eth0`).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: Command: %v\n%s", h.Name, err, out)
			}
			if want := h.DockerHost + " 1\n"; !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), " "+h.IP+"/24 ") {
				t.Fatalf("%s: Command output %q, want %q and eth0 with %s", h.Name, out, want, h.IP)
			}
		}

		// h2 serves on its host network (:8080) and from a bridged container
		// published on :8081 (iptables inside h2's namespace).
		hostsRunTestApp(ctx, t, h2, "hostnet", &container.HostConfig{NetworkMode: "host"}, nil)
		hostsRunTestApp(ctx, t, h2, "bridged", &container.HostConfig{
			PortBindings: nat.PortMap{"8080/tcp": {{HostPort: "8081"}}},
		}, nat.PortSet{"8080/tcp": {}})
		tcpFromH1 := func(addr string) error { return hostsTCPCheck(h1, addr) }
		eventually(t, 20*time.Second, "h1 reaches h2:8080 (host network)", func() error {
			return tcpFromH1(h2.IP + ":8080")
		})
		eventually(t, 20*time.Second, "h1 GETs h2:8081 (published port)", func() error {
			body, err := hostsGet(h1, "http://"+h2.IP+":8081/")
			if err == nil && !strings.Contains(body, "hello from bridged-h2") {
				err = fmt.Errorf("body %q", body)
			}
			return err
		})
		// DialContext leaves from h1's address.
		c, err := h1.DialContext(ctx, "tcp", h2.IP+":8080")
		if err != nil {
			t.Fatal(err)
		}
		if ip := c.LocalAddr().(*net.TCPAddr).IP.String(); ip != h1.IP {
			t.Errorf("DialContext from h1: local address %s, want %s", ip, h1.IP)
		}
		c.Close()

		h2.Cut(t)
		if err := tcpFromH1(h2.IP + ":8080"); err == nil {
			t.Fatal("h1 reaches h2 after h2.Cut")
		}
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		if c, err := h1.DialContext(dctx, "tcp", h2.IP+":8081"); err == nil {
			c.Close()
			t.Fatal("h1 dials h2 after h2.Cut")
		}
		dcancel()
		// The engine of a cut host still answers the test (unix socket).
		if _, err := h2.Docker.Ping(ctx); err != nil {
			t.Fatalf("h2 engine after Cut: %v", err)
		}
		h2.Restore(t)
		eventually(t, 15*time.Second, "h1 reaches h2 after Restore", func() error {
			return tcpFromH1(h2.IP + ":8080")
		})
	})
	if prefix == "" {
		return // skipped, or failed before creating anything
	}

	// The subtest's cleanup has run: nothing of the run may remain.
	if hostsRunPrefixes()[prefix] {
		t.Errorf("objects of run %s remain after cleanup", prefix)
	}
	for _, pid := range engines {
		if hostsAlive(pid) {
			t.Errorf("dockerd pid %d still runs", pid)
		}
	}
	for _, p := range []string{"/run/netns/" + prefix + "h1", "/sys/class/net/" + prefix + "0", "/sys/class/net/v" + prefix + "h1",
		hostsRunDir + "/" + prefix + "h1", hostsLibDir + "/" + prefix + "h2", hostsRunDir + "/" + prefix + ".owner"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s remains after cleanup", p)
		}
	}
	if m := hostsMounts([]string{hostsRunDir + "/" + prefix, hostsLibDir + "/" + prefix}); len(m) > 0 {
		t.Errorf("mounts remain: %v", m)
	}
	if d := time.Since(start); d > 90*time.Second {
		t.Errorf("TestHostsHarness took %s, want under 90s", d)
	}
}

// hostsRunTestApp starts testImage named name on h with hc.
func hostsRunTestApp(ctx context.Context, t *testing.T, h *testHost, name string, hc *container.HostConfig, exposed nat.PortSet) {
	t.Helper()
	cfg := &container.Config{Image: testImage, ExposedPorts: exposed}
	if hc.NetworkMode != "host" {
		cfg.Hostname = name + "-" + h.Name
	}
	ct, err := h.Docker.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		t.Fatalf("%s: create %s: %v", h.Name, name, err)
	}
	if err := h.Docker.ContainerStart(ctx, ct.ID, container.StartOptions{}); err != nil {
		t.Fatalf("%s: start %s: %v", h.Name, name, err)
	}
}

// hostsTCPCheck connects to addr from inside h with bash (no ping or nc needed).
func hostsTCPCheck(h *testHost, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := h.CommandContext(ctx, nil, "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tcp %s from %s: %v %s", addr, h.Name, err, out)
	}
	return nil
}

func hostsGet(h *testHost, url string) (string, error) {
	resp, err := h.HTTPClient(2 * time.Second).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
