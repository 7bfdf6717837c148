package cdn

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
	"github.com/damselfly-p2p/damselfly/test/disktest"
)

// readOnlyStore opens every data file read-only: each piece write fails
// (EBADF), as every write does on a full disk or a failing one.
type readOnlyStore struct{ *store.Store }

func (s readOnlyStore) OpenData(id string, truncate bool) (*os.File, error) {
	f, err := s.Store.OpenData(id, truncate)
	if err != nil {
		return nil, err
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		return nil, err
	}
	return os.Open(name)
}

// unsizedOrigin streams total zero bytes without a Content-Length (so the
// cache file cannot be reserved up front), then, when hold is set, keeps
// the connection open without sending more until the client goes. sent
// counts the bytes the client took; done is closed when the handler ends.
type unsizedOrigin struct {
	*httptest.Server
	sent atomic.Int64
	done chan struct{}
}

func newUnsizedOrigin(t *testing.T, total int64, hold bool) *unsizedOrigin {
	o := &unsizedOrigin{done: make(chan struct{})}
	chunk := make([]byte, 256<<10)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(o.done)
		w.WriteHeader(http.StatusOK)
		for o.sent.Load() < total {
			n, err := w.Write(chunk[:min(int64(len(chunk)), total-o.sent.Load())])
			o.sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		if hold {
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	t.Cleanup(o.Close)
	return o
}

// failedFill runs a fill of o's body into a cache whose writes all fail
// and returns its result, how long it took and the source bytes it read.
// The failure must reach the task as FinishCDN(ok=false) once, with no
// piece ever announced, and leave no writer goroutine behind.
func failedFill(t *testing.T, o *unsizedOrigin) (Result, time.Duration, int64) {
	t.Helper()
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := NewMockProgress(gomock.NewController(t))
	p.EXPECT().ResetCDN("t1")
	p.EXPECT().FinishCDN("t1", 0, false)
	mx := Metrics{DownloadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"})}
	m := New(Config{SourceAllow: loopbackAllow()}, readOnlyStore{st}, p, mx, quietLog())
	t.Cleanup(m.Close)
	base := runtime.NumGoroutine()
	done := make(chan Result, 1)
	begin := time.Now()
	if _, err := m.Start(Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}, func(r Result) { done <- r }); err != nil {
		t.Fatalf("start: %v", err)
	}
	var res Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("a fill whose writes fail still runs after 10 s (source sent %d bytes)", o.sent.Load())
	}
	took := time.Since(begin)
	if res.OK || !errors.Is(res.Err, syscall.EBADF) || IsSourceError(res.Err) {
		t.Fatalf("fill: %+v, want the write error (EBADF)", res)
	}
	select {
	case <-o.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the source is still sending: the fill never closed its body")
	}
	noGoroutinesLeft(t, m, base)
	return res, took, int64(counterValue(t, mx.DownloadBytes))
}

// noGoroutinesLeft waits until the goroutine count is back to base and
// none of the writer pool's goroutines, nor a fill waiting for its turn,
// remains. An idle source connection is closed first: it is the
// transport's, kept for reuse, not a leak.
func noGoroutinesLeft(t *testing.T, m *Manager, base int) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m.http.CloseIdleConnections()
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		pool := strings.Contains(stacks, "cdn.(*writers)") || strings.Contains(stacks, "cdn.(*Manager).run") ||
			strings.Contains(stacks, "gate.(*Gate).Wait")
		if !pool && runtime.NumGoroutine() <= base {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("goroutines left after the failed fill (%d, %d before):\n%s", runtime.NumGoroutine(), base, stacks)
}

// A full disk (or EIO) fails piece 0; the source has 32 pieces more of
// unknown length. The fill must stop reading at once, not after the whole
// body, and fail with the write error.
func TestWriteErrorStopsTheFill(t *testing.T) {
	ps := piece.ContentSize(piece.DefaultSize)
	total := 32 * ps
	o := newUnsizedOrigin(t, total, false)
	res, _, read := failedFill(t, o)
	t.Logf("fill failed after reading %d of %d source bytes: %v", read, total, res.Err)
	// The pool holds 2*Workers+1 buffers: a few pieces may be cut before
	// the feeder sees the failure, never the rest of the body.
	if read > 8*ps || o.sent.Load() >= total {
		t.Fatalf("the fill read %d of %d source bytes (source sent %d) after piece 0 failed to write",
			read, total, o.sent.Load())
	}
}

// A source that has sent piece 0 and is slow with the next: the failed
// write of piece 0 must cut the read short, not wait for the stall
// watchdog (3 x SourceTimeout = 30 s) to end the fill.
func TestWriteErrorAbortsABlockedRead(t *testing.T) {
	o := newUnsizedOrigin(t, piece.ContentSize(piece.DefaultSize)+10, true)
	res, took, _ := failedFill(t, o)
	t.Logf("fill failed after %s: %v", took.Round(time.Millisecond), res.Err)
	if took > 5*time.Second {
		t.Fatalf("the fill took %s to fail after piece 0 could not be written", took)
	}
}

// A source that declares more than the cache disk holds (anyone can set a
// Content-Length) fails the fill at once, with the refusal, and leaves the
// disk as free as it found it: ext4 keeps the blocks of a failed
// reservation, so the disk stayed full until a GC, which counted the file
// as 0 bytes.
func TestFillRefusesLengthBeyondFreeSpace(t *testing.T) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1073741824")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("x"))
	}))
	defer o.Close()
	st, err := store.New(disktest.Ext4(t, 64))
	if err != nil {
		t.Fatal(err)
	}
	p := NewMockProgress(gomock.NewController(t))
	p.EXPECT().ResetCDN("huge")
	p.EXPECT().FinishCDN("huge", 0, false)
	m := New(Config{SourceAllow: loopbackAllow()}, st, p, Metrics{}, quietLog())
	defer m.Close()
	before, err := st.AvailSpace()
	if err != nil {
		t.Fatal(err)
	}
	_, res := start(t, m, Source{TaskID: "huge", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"})
	after, err := st.AvailSpace()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fill: %v; %d bytes free before, %d after, the data file holds %d", res.Err, before, after, st.DataUsage("huge"))
	if res.OK || !errors.Is(res.Err, syscall.ENOSPC) || !strings.Contains(res.Err.Error(), "more bytes needed") {
		t.Errorf("fill of a 1 GiB file on a 64 MiB disk: %+v, want the refusal (ENOSPC)", res)
	}
	if after < before-1<<20 {
		t.Errorf("the failed fill left %d bytes free, %d before", after, before)
	}
}
