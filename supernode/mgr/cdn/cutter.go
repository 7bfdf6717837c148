package cdn

import (
	"context"
	"errors"
	"fmt"
	"io"
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
func (c *cutter) next(buf []byte) (num, n int, ok bool, err error) {
	n, err = io.ReadFull(c.body, buf[:c.size])
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

// watchedBody is a source body read under the bandwidth limit, counted,
// and watched: a source that sends nothing for idle is cancelled, so it
// fails the task instead of holding it RUNNING forever.
type watchedBody struct {
	io.Reader
	idle    time.Duration
	stalled chan struct{}
	timer   *time.Timer
}

func (m *Manager) watchBody(ctx context.Context, cancel context.CancelFunc, r io.Reader) *watchedBody {
	w := &watchedBody{idle: m.stallBound(), stalled: make(chan struct{})}
	// A member's stream is timed by its own bytes, keep-alives included,
	// and a stalled member is dropped for the origin, which gets the whole
	// bound again, rather than failing the fill.
	mb, _ := r.(*memberBody)
	w.timer = time.AfterFunc(w.idle, func() {
		if mb != nil && mb.dropStalled() {
			w.timer.Reset(w.idle)
			return
		}
		close(w.stalled)
		cancel()
	})
	progress := func() { w.timer.Reset(w.idle) }
	if mb != nil {
		mb.alive = progress
	}
	// A window's discarded bytes are read through the counting reader too,
	// so a long skip is not taken for a stall.
	win, _ := r.(*window)
	if win != nil {
		r = win.r
	}
	w.Reader = &countingReader{r: r, ctx: ctx, lim: m.limiter, c: m.sourceCounter(r), progress: progress}
	if win != nil {
		win.r, w.Reader = w.Reader, win
	}
	return w
}

// stallBound is how long a source (a member too) may send nothing before
// it is given up.
func (m *Manager) stallBound() time.Duration { return 3 * m.cfg.SourceTimeout }

// stop ends the watch; it returns the stall as a source error if the
// watchdog fired.
func (w *watchedBody) stop(m *Manager, url string) error {
	w.timer.Stop()
	select {
	case <-w.stalled:
		m.countSourceFailure()
		return &SourceError{URL: url, Err: fmt.Errorf("no data for %s", w.idle)}
	default:
		return nil
	}
}

// countingReader applies the bandwidth limit, counts source bytes and
// reports progress (to the stall watchdog).
type countingReader struct {
	r        io.Reader
	ctx      context.Context
	lim      *xrate.Limiter
	c        prometheus.Counter
	progress func()
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
		c.progress()
		c.c.Add(float64(n))
		if c.lim != nil {
			if werr := c.lim.WaitN(c.ctx, n); werr != nil {
				return n, werr
			}
		}
	}
	return n, err
}
