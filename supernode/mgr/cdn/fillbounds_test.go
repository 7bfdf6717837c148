package cdn

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// trickleOrigin serves length bytes (-1: chunked, without end) in writes of
// chunk bytes, one every every, until the client goes. started counts the
// requests that got their first write.
type trickleOrigin struct {
	*httptest.Server
	started atomic.Int32
}

func newTrickleOrigin(t *testing.T, length int64, chunk int, every time.Duration) *trickleOrigin {
	o := &trickleOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if length >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
		}
		w.WriteHeader(http.StatusOK)
		b := make([]byte, chunk)
		for sent := int64(0); length < 0 || sent < length; sent += int64(len(b)) {
			if length >= 0 {
				b = b[:min(int64(chunk), length-sent)]
			}
			if _, err := w.Write(b); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if sent == 0 {
				o.started.Add(1)
			}
			select {
			case <-time.After(every):
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(o.Close)
	return o
}

// heapGrowth starts n fills of o, waits until each has its first bytes,
// and returns how much the heap in use grew, with the fills still running.
func heapGrowth(t *testing.T, m *Manager, o *trickleOrigin, n int) int64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		id := fmt.Sprintf("slow%02d", i)
		if _, err := m.Start(Source{TaskID: id, RawURL: o.URL + "/" + id, TaskURL: o.URL + "/" + id}, func(Result) {}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); o.started.Load() < int32(n); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d fills got their first bytes", o.started.Load(), n)
		}
	}
	time.Sleep(200 * time.Millisecond) // each fill on to its read
	runtime.GC()
	runtime.ReadMemStats(&after)
	for i := range n {
		if id := fmt.Sprintf("slow%02d", i); !m.Running(id) {
			t.Fatalf("fill %s ended: the heap was not measured with every fill running", id)
		}
	}
	return int64(after.HeapInuse) - int64(before.HeapInuse)
}

// 50 fills of a 1000-byte file whose origin sends a byte every 2 s: each
// held 2*Workers+1 buffers of a whole piece (4 MiB), 1 GiB in all, for as
// long as its origin kept sending. A fill's buffers are no larger than its
// wrapped file.
func TestSlowSmallFillsHoldLittleMemory(t *testing.T) {
	o := newTrickleOrigin(t, 1000, 1, 2*time.Second)
	// Every fill running at once, past the default cap: the measure is of
	// running fills.
	m, _, _ := newCappedManager(t, 50)
	grew := heapGrowth(t, m, o, 50)
	t.Logf("50 running fills of 1000-byte files: heap in use grew by %d KiB", grew>>10)
	if grew >= 50<<20 {
		t.Fatalf("50 running fills of 1000-byte files: heap in use grew by %d MiB, want under 50", grew>>20)
	}
}

// A fill makes a piece buffer only when no free one is left: a source that
// trickles holds the one it is read into, not the whole pool (5 pieces).
func TestTricklingFillHoldsOneBuffer(t *testing.T) {
	o := newTrickleOrigin(t, -1, 1, 2*time.Second)
	const fills, ps = 10, 4 << 20
	m, _, _ := newCappedManager(t, fills)
	grew := heapGrowth(t, m, o, fills)
	t.Logf("%d running fills of unknown length (4 MiB pieces): heap in use grew by %d MiB", fills, grew>>20)
	if grew >= fills*ps*3/2 {
		t.Fatalf("%d trickling fills grew the heap by %d MiB: more than one 4 MiB buffer each", fills, grew>>20)
	}
}

// A source that never goes silent but sends 1 KiB/s, under the minimum
// rate, fails the fill within two windows of the stall bound (the windows
// run from the start of the body), where it used to hold it as long as
// it kept sending.
func TestTricklingSourceFails(t *testing.T) {
	o := newTrickleOrigin(t, 1<<20, 100, 100*time.Millisecond)
	m, _ := newManager(t, anyProgress(t), 0)
	m.cfg.SourceTimeout = 200 * time.Millisecond
	begin := time.Now()
	done := make(chan Result, 1)
	if _, err := m.Start(Source{TaskID: "trickle", RawURL: o.URL + "/f"}, func(r Result) { done <- r }); err != nil {
		t.Fatal(err)
	}
	bound := 2 * m.stallBound()
	select {
	case res := <-done:
		took := time.Since(begin)
		t.Logf("failed after %s (stall bound %s): %v", took.Round(time.Millisecond), m.stallBound(), res.Err)
		if res.OK || !IsSourceError(res.Err) || !strings.Contains(res.Err.Error(), "under the minimum") {
			t.Fatalf("trickling source: %+v, want a source error for its rate", res)
		}
		if took > bound+time.Second {
			t.Fatalf("trickling source failed after %s, want within %s", took, bound)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a source sending 1 KiB/s still holds its fill after 10 s (stall bound %s)", m.stallBound())
	}
}

// An origin as slow as 64 KiB/s is well above the minimum rate: its fill
// completes, also with a short stall bound.
func TestSlowSourceAboveMinimumRateCompletes(t *testing.T) {
	o := newTrickleOrigin(t, 160<<10, 16<<10, 250*time.Millisecond)
	m, _ := newManager(t, anyProgress(t), 0)
	m.cfg.SourceTimeout = 200 * time.Millisecond
	_, res := start(t, m, Source{TaskID: "slow", RawURL: o.URL + "/f"})
	if !res.OK {
		t.Fatalf("a 64 KiB/s source failed: %v", res.Err)
	}
}

// The bandwidth limit may hold a fill under the minimum rate: that is not
// the source's doing, and the fill completes.
func TestBandwidthLimitBelowMinimumRateCompletes(t *testing.T) {
	// The limiter's first 256 KiB pass at once; the 8 KiB after them take
	// 2 s at 4 KiB/s, in 2 KiB reads: 3.6 KiB per window of 0.9 s, under
	// the 7.2 KiB the minimum rate asks.
	o := newTrickleOrigin(t, 264<<10, 264<<10, time.Second)
	m, _ := newManager(t, anyProgress(t), 4<<10)
	m.cfg.SourceTimeout = 300 * time.Millisecond
	_, res := start(t, m, Source{TaskID: "limited", RawURL: o.URL + "/f"})
	if !res.OK {
		t.Fatalf("a fill held back by the bandwidth limit failed: %v", res.Err)
	}
}

// A buffer shorter than a piece holds a file shorter than one: the last
// piece is cut from it, and a body that runs past the length shows in the
// same read. One too short for the rest of the file is an error, never a
// short piece.
func TestCutterShortBuffer(t *testing.T) {
	ps := int32(piece.DefaultSize)
	for _, c := range []struct {
		name, body string
		buf        int
		want       string // error text; "" for a piece of the whole body
	}{
		{"fits", "0123456789", bufferSize(10, ps), ""},
		{"runs past", "0123456789X", bufferSize(10, ps), "runs past"},
		{"too short", "0123456789", 8, "cannot hold"},
	} {
		cut := &cutter{body: strings.NewReader(c.body), url: "u", size: piece.ContentSize(ps), length: 10}
		buf := make([]byte, c.buf)
		_, n, ok, err := cut.next(buf[piece.HeadSize:])
		switch {
		case c.want == "" && (err != nil || !ok || n != 10 || !cut.ended):
			t.Errorf("%s: %d bytes, ok %v, ended %v, %v; want the 10-byte piece and the end", c.name, n, ok, cut.ended, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %d bytes, ok %v, %v; want an error with %q", c.name, n, ok, err, c.want)
		}
	}
}
