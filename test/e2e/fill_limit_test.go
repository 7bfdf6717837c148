package e2e

import (
	"bytes"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// --cdn-fill-limit 1: while one fill runs, the registration of another
// file is answered within a second with the file's length and the piece
// size of that length (the origin asked for one byte, once: a 300 MiB file
// gets 5 MiB pieces), its client is told to wait (602), the origin is not
// asked for the file until the running fill ended, and then a v1-protocol
// client and a dfget both get the file whole, the dfget having registered
// with the length. A URL the origin answers 404 is refused at registration
// (no fill waits for it).
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
	if took := time.Since(begin); took > 2*time.Second || reg.FileLength != int64(len(next)) || reg.PieceSize != piece.DefaultSize {
		t.Fatalf("registration past the limit: %+v after %s, want length %d and piece size %d at once",
			reg, took, len(next), piece.DefaultSize)
	}
	if probes, fills := o.count("/next.bin", 206), o.count("/next.bin", 200); probes != 1 || fills != 0 {
		t.Fatalf("origin answered next.bin %d times 206 and %d times 200 while the slow fill runs, want the one probe", probes, fills)
	}
	// Never read: its one client goes down before its turn.
	bigURL := o.add("/big.bin", make([]byte, 300<<20))
	big := newClient(t, sn, "127.0.0.1-27-27.000")
	if reg := big.register(big.registerReq(bigURL)); reg.FileLength != 300<<20 || reg.PieceSize != piece.ComputeSize(300<<20) {
		t.Fatalf("registration of 300 MiB past the limit: %+v, want its length and piece size %d", reg, piece.ComputeSize(300<<20))
	}
	if r := big.get("/peer/service/down", url.Values{"taskId": {big.taskID}, "cid": {big.cid}}); r.Code != types.CodeGetPeerDown {
		t.Fatalf("service down: %+v", r)
	}
	missing := newClient(t, sn, "127.0.0.1-28-28.000")
	if status, body := missing.registerRaw(missing.registerReq(o.URL + "/missing.bin")); !bytes.Contains(body, []byte(`"code":`+strconv.Itoa(types.CodeURLNotReachable))) {
		t.Fatalf("registration of a 404 past the limit: HTTP %d %s, want code %d", status, body, types.CodeURLNotReachable)
	}
	if r := c2.pull(types.TaskStatusStart, types.ResultInvalid, "", ""); r.Code != types.CodePeerWait {
		t.Fatalf("pull of a waiting fill: %+v, want 602", r)
	}
	if w := metricPresent(t, sn, "dragonfly_supernode_cdn_fills_waiting"); w != 2 || o.count("/next.bin", 200) != 0 {
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
	peer := newDfgetPeer(t, "127.0.0.24")
	runs := peer.runAsync(sn, "-u", thirdURL, "-o", out, "--notbs")
	Eventually(t, 10*time.Second, "the dfget's fill waiting", func() bool {
		return metricValue(t, sn, "dragonfly_supernode_cdn_fills_waiting") == 1
	})
	if run := <-runs; run.code != 0 {
		t.Fatalf("dfget behind a running fill: exit %d: %s %s", run.code, run.stdout, run.stderr)
	}
	fileEquals(t, out, third)
	if want := fmt.Sprintf("length %d piece size %d", len(third), piece.DefaultSize); !strings.Contains(peer.clientLog(), want) {
		t.Fatalf("dfget's log has no %q: it did not register with the length", want)
	}
	if n := o.count("/big.bin", 200); n != 0 {
		t.Fatalf("origin served the file nobody was left to download %d times", n)
	}
}

// --cdn-fill-limit 1: a fill waiting behind a running one whose only
// client went down (/peer/service/down) before its turn reads nothing from
// the origin when its turn comes; the task's fill has then failed, and a
// later registration starts it anew and downloads the file.
func TestSupernodeFillLimitSkipsAbandonedFill(t *testing.T) {
	o := newOrigin(t)
	slow := randomData(8<<20, 24)
	slowURL := o.addSlow("/slow.bin", slow, 8*time.Millisecond) // ~8 MB/s: 1 s for the file
	next := randomData(1<<20+3, 25)
	nextURL := o.add("/next.bin", next)
	sn := startSupernode(t, t.TempDir(), "--cdn-fill-limit", "1")

	c1 := newClient(t, sn, "127.0.0.1-24-24.000")
	c1.register(c1.registerReq(slowURL))
	gone := newClient(t, sn, "127.0.0.1-25-25.000")
	if reg := gone.register(gone.registerReq(nextURL)); reg.FileLength != int64(len(next)) {
		t.Fatalf("registration past the limit: %+v, want length %d", reg, len(next))
	}
	if r := gone.get("/peer/service/down", url.Values{"taskId": {gone.taskID}, "cid": {gone.cid}}); r.Code != types.CodeGetPeerDown {
		t.Fatalf("service down: %+v", r)
	}
	if got, _ := c1.download(time.Minute); !bytes.Equal(got, slow) {
		t.Fatal("slow file differs")
	}
	Eventually(t, 10*time.Second, "the abandoned fill's turn", func() bool {
		return taskInfo(t, sn, gone.taskID).CdnStatus != types.CDNStatusRunning
	})
	if s, n := taskInfo(t, sn, gone.taskID).CdnStatus, o.count("/next.bin", 200); s != types.CDNStatusFailed || n != 0 {
		t.Fatalf("fill nobody was left to download: %s, origin served next.bin %d times; want FAILED and none", s, n)
	}
	checkFills(t, sn, 0, 0)
	again := newClient(t, sn, "127.0.0.1-26-26.000")
	again.register(again.registerReq(nextURL))
	if got, _ := again.download(time.Minute); !bytes.Equal(got, next) {
		t.Fatal("a registration after the abandoned fill got other bytes")
	}
}

func checkFills(t *testing.T, sn *supernode, running, waiting float64) {
	t.Helper()
	r, w := metricValue(t, sn, "dragonfly_supernode_cdn_fills_running"), metricValue(t, sn, "dragonfly_supernode_cdn_fills_waiting")
	if r != running || w != waiting {
		t.Fatalf("fills running %v, waiting %v; want %v and %v", r, w, running, waiting)
	}
}
