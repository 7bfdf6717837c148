package cdn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	xrate "golang.org/x/time/rate"
)

// errTruncated is a source body that the transport saw end before its
// declared end: short of its Content-Length, or a chunked body without its
// terminating chunk. net/http reports both as io.ErrUnexpectedEOF, which
// io.ReadFull also returns for a plain short last read, so it is renamed
// before it reaches io.ReadFull and can never pass as the end of the file.
var errTruncated = errors.New("source body truncated before its end")

// cutter reads a source body piece by piece: every piece but the last fills
// size bytes, and an announced length must be met exactly. Both patterns
// cut with it, so a piece the CDN writes and a piece the source pattern
// hashes are the same bytes for the same number.
type cutter struct {
	body   io.Reader
	url    string
	size   int64 // content bytes per piece
	length int64 // content bytes of the whole file, -1 if unknown
	num    int   // number of the next piece
	off    int64 // content offset of the next piece
	ended  bool  // the body is at its end: no piece follows
}

// next reads the next piece into buf[:size]. It returns the piece's number
// and length, or ok=false when the body ended without another piece. An
// error is a source failure: a broken read, a truncated body, or one that
// ends before or runs past the announced length. A piece it returns is
// complete.
//
// buf may be shorter than a piece if it holds more than the rest of the
// announced length: the file's last piece fits, and a byte past its end
// still shows in the same read.
func (c *cutter) next(buf []byte) (num, n int, ok bool, err error) {
	want := c.size
	if int64(len(buf)) < want {
		if c.length < 0 || int64(len(buf)) <= c.length-c.off {
			return 0, 0, false, fmt.Errorf("a buffer of %d bytes cannot hold piece %d of %s", len(buf), c.num, c.url)
		}
		want = int64(len(buf))
	}
	n, err = io.ReadFull(c.body, buf[:want])
	// Only io.ReadFull's own end markers mean the body ended cleanly; a
	// transport truncation arrives as errTruncated.
	end := err == io.EOF || err == io.ErrUnexpectedEOF
	if err != nil && !end {
		return 0, 0, false, &SourceError{URL: c.url, Err: err}
	}
	got := c.off + int64(n)
	switch {
	case c.length >= 0 && got > c.length:
		return 0, 0, false, &SourceError{URL: c.url, Err: fmt.Errorf("body runs past its length of %d bytes", c.length)}
	case c.length >= 0 && end && got != c.length:
		return 0, 0, false, &SourceError{URL: c.url, Err: fmt.Errorf("body ended at %d of %d bytes", got, c.length)}
	}
	c.ended = end
	// A zero-length file still has one (empty) piece.
	if n == 0 && (c.num != 0 || !end) {
		return 0, 0, false, nil
	}
	num = c.num
	c.num++
	c.off = got
	return num, n, true, nil
}

// minSourceRate is the slowest a source may send, averaged over each
// stall bound: 8 KiB/s, an eighth of an origin as slow as 64 KiB/s. A fill
// holds a piece buffer and a task for as long as its source sends, and a
// source that sends a byte now and then would hold them for good.
const minSourceRate = 8 << 10

// watchedBody is a source body read under the bandwidth limit, counted,
// and watched: a source that sends nothing for idle, or fewer than floor
// bytes in a window of idle, is cancelled, so it fails the task instead
// of holding it RUNNING forever.
type watchedBody struct {
	// Reader is the counting reader over the body, inside the ranged
	// task's window when it has one.
	io.Reader
	idle  time.Duration
	floor int64
	idler *time.Timer // reset by every byte
	rater *time.Timer // fires at the end of each window
	// got counts the window's bytes; held is set when the bandwidth
	// limit held a read back in it.
	got  atomic.Int64
	held atomic.Bool
	// mu guards why, the stall, and done, set once the watch stopped: a
	// timer that fires as it stops must not cancel a fill that ended.
	mu   sync.Mutex
	why  error
	done bool
}

func (m *Manager) watchBody(ctx context.Context, cancel context.CancelFunc, r io.Reader) *watchedBody {
	idle := m.stallBound()
	w := &watchedBody{idle: idle, floor: int64(minSourceRate * idle.Seconds())}
	// A member's stream is timed by its own bytes, keep-alives included,
	// and a stalled member is dropped for the origin, which gets the whole
	// bound again, rather than failing the fill.
	mb, _ := r.(*memberBody)
	w.idler = time.AfterFunc(idle, func() {
		if mb != nil && mb.drop(fmt.Errorf("home silent for %s", idle)) {
			w.idler.Reset(idle)
			return
		}
		w.stall(cancel, fmt.Errorf("no data for %s", idle))
	})
	w.rater = time.AfterFunc(idle, func() { w.checkRate(mb, cancel) })
	alive := func() { w.idler.Reset(idle) }
	if mb != nil {
		mb.alive = alive
	}
	// A window's discarded bytes are read through the counting reader too,
	// so a long skip is not taken for a stall.
	win, _ := r.(*window)
	if win != nil {
		r = win.r
	}
	w.Reader = &countingReader{r: r, ctx: ctx, lim: m.limiter, c: m.sourceCounter(r),
		progress: func(n int) {
			w.got.Add(int64(n))
			alive()
		},
		held: func() { w.held.Store(true) }}
	if win != nil {
		win.r, w.Reader = w.Reader, win
	}
	return w
}

// checkRate ends a window: a source that sent fewer than floor bytes in
// it stalls, unless the bandwidth limit held its reads back (the
// slowness was the supernode's). A member is timed by its stream's bytes
// (a piece's content comes out whole, once its frame is in), and dropped
// for the origin rather than failing the fill; a keep-alive in the window
// exempts it: it waits for its own origin, which its own watchdog times.
func (w *watchedBody) checkRate(mb *memberBody, cancel context.CancelFunc) {
	got, held := w.got.Swap(0), w.held.Swap(false)
	if mb != nil && mb.onMember.Load() {
		if sent, beat := mb.window(); !beat && !held && sent < w.floor {
			mb.drop(fmt.Errorf("home sent %d bytes in %s, under the minimum of %d bytes/s", sent, w.idle, minSourceRate))
		}
		w.rater.Reset(w.idle)
		return
	}
	if got >= w.floor || held {
		w.rater.Reset(w.idle)
		return
	}
	w.stall(cancel, fmt.Errorf("%d bytes in %s, under the minimum of %d bytes/s", got, w.idle, minSourceRate))
}

// stall records why the source stalled and cancels the fill, unless the
// watch stopped.
func (w *watchedBody) stall(cancel context.CancelFunc, why error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.why != nil {
		return
	}
	w.why = why
	cancel()
}

// stallBound is how long a source (a member too) may send nothing before
// it is given up, and the window over which it must send at
// minSourceRate.
func (m *Manager) stallBound() time.Duration { return 3 * m.cfg.SourceTimeout }

// stop ends the watch; it returns the stall as a source error if the
// watchdog fired.
func (w *watchedBody) stop(m *Manager, url string) error {
	w.idler.Stop()
	w.rater.Stop()
	w.mu.Lock()
	w.done = true
	why := w.why
	w.mu.Unlock()
	if why == nil {
		return nil
	}
	m.countSourceFailure()
	return &SourceError{URL: url, Err: why}
}

// countingReader applies the bandwidth limit, counts source bytes and
// reports them (to the stall watchdog), and reads the limit held back.
type countingReader struct {
	r        io.Reader
	ctx      context.Context
	lim      *xrate.Limiter
	c        prometheus.Counter
	progress func(n int)
	held     func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	chunk := readChunk
	if c.lim != nil {
		// Small reads under a low limit, so no single wait outlasts the
		// stall watchdog: at most about half a second of the rate.
		chunk = min(chunk, max(1<<10, int(c.lim.Limit())/2))
	}
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := c.r.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errTruncated
	}
	if n > 0 {
		c.progress(n)
		c.c.Add(float64(n))
		if c.lim != nil {
			begin := time.Now()
			if werr := c.lim.WaitN(c.ctx, n); werr != nil {
				return n, werr
			}
			if time.Since(begin) > time.Millisecond {
				c.held()
			}
		}
	}
	return n, err
}
