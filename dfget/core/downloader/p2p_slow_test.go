package downloader

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// countWriter takes verified pieces and counts them.
type countWriter struct{ n atomic.Int32 }

func (w *countWriter) WritePiece(_ context.Context, p *Piece) error {
	p.Release()
	w.n.Add(1)
	return nil
}

// slowTestSwarm is a holder serving wrapped pieces of per content bytes,
// and a supernode counting piece-error reports.
type slowTestSwarm struct {
	holder, node *httptest.Server
	pieces       [][]byte
	size         int32
	errors       atomic.Int32
}

func newSlowTestSwarm(t *testing.T, count, per int, serve func(w http.ResponseWriter, r *http.Request, b []byte)) *slowTestSwarm {
	s := &slowTestSwarm{size: int32(per + piece.WrapSize)}
	for i := 0; i < count; i++ {
		s.pieces = append(s.pieces, piece.Wrap(nil, bytes.Repeat([]byte{byte(i)}, per), s.size))
	}
	s.holder = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		num, _ := strconv.Atoi(r.Header.Get("pieceNum"))
		serve(w, r, s.pieces[num])
	}))
	t.Cleanup(s.holder.Close)
	s.node = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/peer/piece/error" {
			s.errors.Add(1)
			return
		}
		w.Write([]byte(`{"code":611}`))
	}))
	t.Cleanup(s.node.Close)
	return s
}

func servePiece(w http.ResponseWriter, _ *http.Request, b []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(b)
}

func (s *slowTestSwarm) info(num int) types.PieceInfo {
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(s.holder.URL, "http://"))
	p, _ := strconv.Atoi(port)
	return types.PieceInfo{Range: piece.Range(num, s.size, -1), PieceNum: num, PieceSize: s.size,
		PieceMd5: piece.Md5Value(s.pieces[num]), CID: "peer-a", PeerIP: host, PeerPort: p, Path: "/peer/file/x"}
}

func (s *slowTestSwarm) p2p(l *xrate.Limiter, w Writer, log *bytes.Buffer) *P2P {
	lg := logrus.New()
	lg.SetOutput(&lockedBuffer{b: log})
	return &P2P{Client: api.New(), Task: Task{Node: strings.TrimPrefix(s.node.URL, "http://"), TaskID: "t", CID: "me",
		PieceSize: s.size}, Wrapped: true, Writer: w, Limiter: l, Log: lg}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Seven 1 MiB pieces from a fast holder share a 1 MiB/s
// --locallimit, which needs about 7 s for them all, longer than the
// guard's 5 s (and longer than 4 x the limit's pace of one piece). The
// time spent waiting on our own limiter is not the holder's: every piece
// arrives, none is given up as "too slow", none is reported.
func TestOwnLimitIsNotHolderSlowness(t *testing.T) {
	const count, per = 7, 1<<20 - piece.WrapSize
	s := newSlowTestSwarm(t, count, per, servePiece)
	var log bytes.Buffer
	w := &countWriter{}
	d := s.p2p(xrate.NewLimiter(1<<20, 128<<10), w, &log)
	var wg sync.WaitGroup
	var failed atomic.Int32
	t0 := time.Now()
	for i := 0; i < count; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := d.fetch(context.Background(), s.info(i), nil); !ok {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d pieces in %v under a 1 MiB/s limit: %d failed, %d error reports", w.n.Load(),
		time.Since(t0).Round(time.Millisecond), failed.Load(), s.errors.Load())
	if failed.Load() != 0 || strings.Contains(log.String(), "too slow") {
		t.Fatalf("%d pieces failed under our own limit; log:\n%s", failed.Load(), log.String())
	}
}

// A refused connection and a holder closing at once are failures of their
// own, not slowness: the log must not call them "too slow".
func TestImmediateFailureIsNotTooSlow(t *testing.T) {
	s := newSlowTestSwarm(t, 1, 1000, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
	})
	var log bytes.Buffer
	d := s.p2p(xrate.NewLimiter(1<<20, 64<<10), &countWriter{}, &log)
	if ok, _ := d.fetch(context.Background(), s.info(0), nil); ok {
		t.Fatal("a holder closing at once gave a piece")
	}
	refused := s.info(0)
	l, _ := net.Listen("tcp4", "127.0.0.1:0")
	refused.PeerPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	if ok, _ := d.fetch(context.Background(), refused, nil); ok {
		t.Fatal("a refused connection gave a piece")
	}
	t.Logf("log:\n%s", log.String())
	if strings.Contains(log.String(), "too slow") {
		t.Fatal("an immediate failure was logged as a slow holder")
	}
}

// A holder that stalls mid-piece is still given up as too slow, limiter or
// not: only the wait on our own limiter is left out of its time.
func TestStalledHolderIsTooSlow(t *testing.T) {
	s := newSlowTestSwarm(t, 1, 1<<20-piece.WrapSize, func(w http.ResponseWriter, r *http.Request, b []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(b[:1000])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	var log bytes.Buffer
	d := s.p2p(xrate.NewLimiter(1<<20, 64<<10), &countWriter{}, &log)
	for range 3 {
		d.slow.observe(10 * time.Millisecond) // the guard's bound is its 3 s floor
	}
	t0 := time.Now()
	if ok, _ := d.fetch(context.Background(), s.info(0), nil); ok {
		t.Fatal("a stalled holder gave a piece")
	}
	took := time.Since(t0)
	t.Logf("stalled holder given up after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(log.String()))
	if took > 5*time.Second || !strings.Contains(log.String(), "too slow") {
		t.Fatalf("stalled holder: %v, log %s", took, log.String())
	}
}
