package e2e

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// --cdn-fill-limit 1: while one fill runs, the registration of another
// file is answered at once (length unknown, the default piece size), its
// client is told to wait (602), the origin is not asked for the file until
// the running fill ended, and then a v1-protocol client and a dfget both
// get the file whole.
func TestSupernodeFillLimitQueues(t *testing.T) {
	o := newOrigin(t)
	slow := randomData(24<<20, 21)
	slowURL := o.addSlow("/slow.bin", slow, 8*time.Millisecond) // ~8 MB/s: 3 s for the file
	next := randomData(5<<20+7, 22)
	nextURL := o.add("/next.bin", next)
	sn := startSupernode(t, t.TempDir(), "--cdn-fill-limit", "1")

	c1 := newClient(t, sn, "127.0.0.1-21-21.000")
	c1.register(c1.registerReq(slowURL))
	c2 := newClient(t, sn, "127.0.0.1-22-22.000")
	begin := time.Now()
	reg := c2.register(c2.registerReq(nextURL))
	if took := time.Since(begin); took > 2*time.Second || reg.FileLength != -1 || reg.PieceSize != piece.DefaultSize {
		t.Fatalf("registration past the limit: %+v after %s, want length -1 and piece size %d at once",
			reg, took, piece.DefaultSize)
	}
	if r := c2.pull(types.TaskStatusStart, types.ResultInvalid, "", ""); r.Code != types.CodePeerWait {
		t.Fatalf("pull of a waiting fill: %+v, want 602", r)
	}
	if w := metricPresent(t, sn, "dragonfly_supernode_cdn_fills_waiting"); w != 1 || o.count("/next.bin", 200) != 0 {
		t.Fatalf("%v fills waiting, origin served next.bin %d times, while the slow fill runs", w,
			o.count("/next.bin", 200))
	}
	got, fin := c2.download(time.Minute)
	if !bytes.Equal(got, next) || fin.Md5 != md5hex(next) {
		t.Fatal("the fill that waited gave other bytes")
	}
	if n := metricPresent(t, sn, "dragonfly_supernode_cdn_fills_running"); n != 0 {
		t.Fatalf("%v fills running once both ended", n)
	}
	if got, _ := c1.download(time.Minute); !bytes.Equal(got, slow) {
		t.Fatal("slow file differs")
	}

	// A dfget behind a running fill: registered while it runs, its fill
	// waits, and it downloads once the fill's turn came.
	third := randomData(3<<20+11, 23)
	thirdURL := o.add("/third.bin", third)
	again := newClient(t, sn, "127.0.0.1-23-23.000")
	again.register(again.registerReq(o.addSlow("/slow2.bin", slow, 8*time.Millisecond)))
	out := filepath.Join(t.TempDir(), "third")
	runs := newDfgetPeer(t, "127.0.0.24").runAsync(sn, "-u", thirdURL, "-o", out, "--notbs")
	Eventually(t, 10*time.Second, "the dfget's fill waiting", func() bool {
		return metricValue(t, sn, "dragonfly_supernode_cdn_fills_waiting") == 1
	})
	if run := <-runs; run.code != 0 {
		t.Fatalf("dfget behind a running fill: exit %d: %s %s", run.code, run.stdout, run.stderr)
	}
	fileEquals(t, out, third)
}
