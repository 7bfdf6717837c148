package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A v1 dfdaemon.yml that names its supernode only in dfget_flags, as most
// v1 setups did: the pull goes through that supernode's swarm.
func TestDfdaemonV1DfgetFlagsNode(t *testing.T) {
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 151, 2<<20, 3<<20+5)
	pushOCI(t, dir, reg, "v1/app:v1")
	sn := startSupernode(t, t.TempDir())
	conf := filepath.Join(t.TempDir(), "dfdaemon.yml")
	yml := fmt.Sprintf("registry_mirror:\n  remote: http://%s\ndfget_flags: [\"--node\", %q, \"--verbose\", \"--expiretime\", \"3m0s\"]\n",
		reg, Addr(sn.api))
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	home := filepath.Join(t.TempDir(), "home")
	p := StartProcess(t, "dfdaemon-"+strconv.Itoa(port), Binary(t, "dfdaemon"), "--port", strconv.Itoa(port),
		"--workHome", home, "--ratelimit", "0", "--config", conf)
	addr := Addr(port)
	WaitPort(t, addr, 10*time.Second)
	d := &dfdaemonProc{Proc: p, addr: addr, home: home}
	d.pull(t, "v1/app:v1", img)
	d.wantStreams(t, "p2p", len(img.Blobs)-1)
	d.wantStreams(t, "source", 0)
	b, err := os.ReadFile(filepath.Join(home, "logs", "dfdaemon.log"))
	if err != nil || !strings.Contains(string(b), "dfget_flags [--expiretime] ignored") {
		t.Fatalf("no warning naming the ignored dfget flag (%v): %.2000s", err, b)
	}
}
