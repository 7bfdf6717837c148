package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An output name near NAME_MAX (here 250 bytes) downloads by P2P and
// reuses the host's peer server: its task file name and temp names are
// cut to fit, and a check the server refused would be an error, not a
// reason to start a server per run.
func TestDfgetLongOutputNameReusesServer(t *testing.T) {
	o := newOrigin(t)
	data := randomData(1<<20, 41)
	url := o.add("/long.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	for i, c := range []string{"a", "b"} {
		dst := filepath.Join(t.TempDir(), strings.Repeat(c, 250))
		r := p.run(sn, "-u", url, "-o", dst, "--notbs")
		if r.code != 0 {
			t.Fatalf("run %d: exit %d %s", i, r.code, r.stdout)
		}
		fileEquals(t, dst, data)
	}
	log, _ := os.ReadFile(filepath.Join(p.home, "logs", "dfserver.log"))
	if n := strings.Count(string(log), "dfget uploader server port is"); n != 1 {
		t.Errorf("peer server started %d times, want once", n)
	}
}
