package uploader

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// silentSupernode answers no request until the test ends, as a supernode
// behind a black hole. Its channel gets a value as each request arrives;
// inflight counts the requests it holds.
func silentSupernode(t *testing.T) (sn *httptest.Server, arrived <-chan struct{}, inflight *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	arrivals := make(chan struct{}, 1024)
	inflight = new(atomic.Int64)
	sn = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		arrivals <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(sn.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets sn.Close return
	return sn, arrivals, inflight
}

// waitArrived waits for a request to the silent supernode: a report is in
// flight, so the drop has one to wait for (queued "cached" reports are
// cancelled by the drop's evictions, never sent).
func waitArrived(t *testing.T, arrived <-chan struct{}) {
	t.Helper()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no report reached the supernode")
	}
}

// pushPieces registers stream task file name with s (owner pid, 0 for
// none) and pushes n pieces into it.
func pushPieces(t *testing.T, s *Server, name, superNode string, window, n, pid int) {
	t.Helper()
	h := s.Handler()
	hdr := map[string]string{"taskFileName": name, "taskID": "T", "cid": "C", "superNode": superNode,
		"pieceSize": strconv.Itoa(testPieceSize), "windowSize": strconv.Itoa(window)}
	if pid > 0 {
		hdr["dfgetPid"] = strconv.Itoa(pid)
	}
	if w := do(t, h, "POST", "/stream/task", "127.0.0.1:1", hdr, nil); w.Code != 200 {
		t.Fatalf("stream task: %d %s", w.Code, w.Body)
	}
	for i := range n {
		if w := do(t, h, "POST", "/stream/piece", "127.0.0.1:1", map[string]string{"taskFileName": name,
			"pieceNum": strconv.Itoa(i), "pieceSize": strconv.Itoa(testPieceSize)},
			piece.Wrap(nil, []byte("x"), testPieceSize)); w.Code != 200 {
			t.Fatalf("push %d: %d", i, w.Code)
		}
	}
}

// Dropping a stream cache waits for its eviction reports only up to the
// queue's grace, all reports together: with a 5 s timeout per report, a
// silent supernode held the drop (window+1) x 5 s, and the dfget's
// DELETE /stream/task or the server's orphan sweep with it.
func TestStreamDropBoundedBySilentSupernode(t *testing.T) {
	sn, arrived, _ := silentSupernode(t)
	s, _ := newTestServer(t)
	const window = 8
	pushPieces(t, s, "st", sn.Listener.Addr().String(), window, window, 0)
	waitArrived(t, arrived)
	sc := s.stream("st")
	sc.notes.mu.Lock()
	sc.notes.grace = 300 * time.Millisecond
	sc.notes.mu.Unlock()
	done := make(chan struct{})
	t0 := time.Now()
	go func() { s.closeStream("st"); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatalf("the drop of a %d-piece window still waits for a silent supernode after 3 s", window)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("drop took %v with a grace of 300ms", took)
	}
	if n := sc.notes.discard(); n != 0 {
		t.Errorf("%d reports still queued after the drop", n)
	}
}

// The orphan sweep runs beside Run's loop: a stream whose dfget was killed
// while the supernode is silent does not keep Run from ending on its ctx.
func TestOrphanDropDoesNotHoldRun(t *testing.T) {
	sn, arrived, inflight := silentSupernode(t)
	s, _ := newTestServer(t)
	owner := startSleeper(t)
	pushPieces(t, s, "st", sn.Listener.Addr().String(), 2, 2, owner.Process.Pid)
	waitArrived(t, arrived)
	_ = owner.Process.Kill()
	_ = owner.Wait()
	_, cancel, done := startRun(t, s)
	// The first idle tick (1 s) starts the drop: the stream is gone from
	// the server. While a report is held by the silent supernode the drop
	// cannot end (the notifier sends one at a time, and the drop waits for
	// it), so Run's ctx ends while the drop waits.
	for i := 0; s.stream("st") != nil || inflight.Load() == 0; i++ {
		if i > 500 {
			t.Fatalf("after 5 s: stream still there %v, %d reports in flight", s.stream("st") != nil, inflight.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t0 := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end within 5 s of its ctx's end")
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("Run took %v to end after its ctx ended", took)
	}
}
