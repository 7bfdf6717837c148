package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// startContainerd runs a private containerd (its own root, state and
// socket; no CRI) and returns a func running ctr against it.
func startContainerd(t *testing.T) func(args ...string) ([]byte, error) {
	t.Helper()
	bin, ctr := imagetest.NeedTool(t, "containerd"), imagetest.NeedTool(t, "ctr")
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	conf := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	StartProcess(t, "containerd", bin, "--config", filepath.Join(dir, "config.toml"))
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return exec.CommandContext(ctx, ctr, append([]string{"--address", sock, "--namespace", "dfdaemon-test"}, args...)...).CombinedOutput()
	}
	Eventually(t, 10*time.Second, "containerd to answer", func() bool { _, err := run("version"); return err == nil })
	return run
}

// containerd fetches an image through the dfdaemon as the mirror of a
// hosts.toml (its own registry host unreachable, so only the mirror can
// serve): every blob comes from the swarm, with containerd's ?ns= query,
// and containerd's content store holds the pushed bytes.
func TestDfdaemonContainerdHostsToml(t *testing.T) {
	ctr := startContainerd(t)
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 210, 3<<20, 1<<20)
	pushOCI(t, dir, reg, "team/app:v1")
	sn := startSupernode(t, t.TempDir())
	d := startDfdaemon(t, reg, sn)
	primary := Addr(FreePort(t)) // nobody listens
	hosts := filepath.Join(t.TempDir(), "certs.d")
	toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"http://"+primary, "http://"+d.addr)
	if err := os.MkdirAll(filepath.Join(hosts, primary), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, primary, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ctr("content", "fetch", "--hosts-dir", hosts, primary+"/team/app:v1"); err != nil {
		t.Fatalf("ctr content fetch: %v: %s", err, out)
	}
	d.wantStreams(t, "p2p", len(img.Blobs)-1)
	for _, l := range img.Layers {
		got, err := ctr("content", "get", l)
		if err != nil || !bytes.Equal(got, img.Blobs[l]) {
			t.Fatalf("layer %s in containerd: %d bytes, %v; want the %d pushed", l, len(got), err, len(img.Blobs[l]))
		}
	}
	// The mirror got containerd's ?ns=<registry> and passed it on.
	if !d.logContains("?ns=" + url.QueryEscape(primary)) {
		t.Fatalf("no blob URL with ?ns=%s in the dfdaemon log", primary)
	}
}
