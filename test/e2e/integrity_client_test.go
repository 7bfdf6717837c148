package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issue 11 item 7: the P2P download succeeds but the output's disk is full
// when it is published. dfget fails with reason 4 (+1000: no fallback) and
// exit 80, and never downloads the file again from the origin, where it
// would only hit the same full disk.
func TestIntegrityOutputDiskFullNoRefetch(t *testing.T) {
	disk, _ := smallDisk(t, 8, 2)
	o := newOrigin(t)
	data := randomData(6<<20, 1107)
	url := o.add("/outfull.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2") // home on the big disk, output on the full one
	dst := filepath.Join(disk, "out")
	r := p.run(sn, "-u", url, "-o", dst, "--timeout", "60s")
	gets := o.count("/outfull.bin", http.StatusOK)
	t.Logf("output disk full: exit %d in %v, origin answered %d full GETs: %s", r.code,
		r.duration.Round(time.Millisecond), gets, lastLine(r.stdout))
	if r.code != 80 || !strings.Contains(r.stdout, "reason:1004") || !strings.Contains(r.stdout, "no space left on device") {
		t.Fatalf("exit %d, want 80 with reason:1004 naming the full disk\n%s", r.code, r.stdout)
	}
	if strings.Contains(r.stdout, "from the source station") || gets != 1 {
		t.Fatalf("the origin was read %d times (want 1, the CDN fill): a local write error re-fetched the file\n%s", gets, r.stdout)
	}
	noFile(t, dst)
}
