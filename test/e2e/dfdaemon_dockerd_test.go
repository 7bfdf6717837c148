package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// startDockerd runs a private dockerd (its own data root, exec root and
// socket; no iptables, no bridge, the vfs driver, so it needs nothing of
// the host's) whose registry mirror is mirror, and returns a func running
// the docker client against it.
func startDockerd(t *testing.T, mirror string) func(args ...string) ([]byte, error) {
	t.Helper()
	bin, cli := imagetest.NeedTool(t, "dockerd"), imagetest.NeedTool(t, "docker")
	if os.Geteuid() != 0 {
		t.Skip("dockerd needs root")
	}
	// Short: the socket path must fit a sockaddr_un.
	dir, err := os.MkdirTemp("", "dkd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := "unix://" + filepath.Join(dir, "docker.sock")
	StartProcess(t, "dockerd", bin, "--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", sock, "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--storage-driver=vfs", "--registry-mirror", "http://"+mirror)
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return exec.CommandContext(ctx, cli, append([]string{"-H", sock}, args...)...).CombinedOutput()
	}
	Eventually(t, 30*time.Second, "dockerd to answer", func() bool { _, err := run("version"); return err == nil })
	return run
}

// dockerd pulls a Docker Hub image (library/...) through its
// registry-mirrors entry, the dfdaemon: with no route to Docker Hub only
// the mirror can serve it. Every blob comes from the swarm, each layer is
// read from the registry once, and dockerd unpacks the layers and checks
// them against the image's diff IDs.
func TestDfdaemonDockerdRegistryMirror(t *testing.T) {
	reg, _ := startRegistry(t)
	var layers [][]byte
	for i, n := range []int{3 << 20, 1<<20 + 5} {
		layers = append(layers, imagetest.TarLayer("layer"+string(rune('a'+i)), randomData(n, 220+uint64(i))))
	}
	dir := t.TempDir()
	img, err := imagetest.WriteOCI(dir, layers)
	if err != nil {
		t.Fatal(err)
	}
	pushOCI(t, dir, reg, "library/dfdtest:v1")
	cp := startCountingProxy(t, reg, "")
	sn := startSupernode(t, t.TempDir())
	d := startDfdaemon(t, cp.addr, sn)
	docker := startDockerd(t, d.addr)
	if out, err := docker("pull", "dfdtest:v1"); err != nil {
		t.Fatalf("docker pull through the mirror: %v: %s", err, out)
	}
	d.wantStreams(t, "p2p", len(img.Blobs)-1)
	d.wantStreams(t, "source", 0)
	wantLayersReadOnce(t, img, cp.reads)
	out, err := docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", "dfdtest:v1")
	if err != nil {
		t.Fatalf("docker image inspect: %v: %s", err, out)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("rootfs layers %q: %v", out, err)
	}
	var want []string
	for _, l := range layers {
		want = append(want, imagetest.Digest(l))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("dockerd unpacked layers %v, want %v", got, want)
	}
}
