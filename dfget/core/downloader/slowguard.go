package downloader

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	xrate "golang.org/x/time/rate"
)

// slowGuard bounds how long a piece fetch from a peer may take before it is
// abandoned and reported failed, so the supernode schedules the piece
// elsewhere (and this client is not sent to that peer again). Without it a
// peer with a thin uplink holds a piece for minutes while others could
// serve it in a second. The bound adapts to this download's own piece
// times (4 x the median of recent ones), so a uniformly slow network does
// not make every peer look slow. Only the holder's time counts: the time a
// fetch waits on this download's own rate limiter (--locallimit, shared by
// every piece in flight) is ours, not the holder's, and is left out of both
// the piece times and the bound (holderClock). Fetches from the supernode
// get a fixed 2 minutes: it is the holder of last resort.
type slowGuard struct {
	mu     sync.Mutex
	recent []time.Duration // ring of the last completed holder times
	next   int
	// initial replaces slowGuardInitial when set (tests).
	initial time.Duration
}

const (
	slowGuardWindow = 16
	// slowGuardInitial applies before any piece completed.
	slowGuardInitial = 5 * time.Second
	slowGuardFloor   = 3 * time.Second
	slowGuardFactor  = 4
	// supernodeFetchLimit bounds a fetch from the supernode.
	supernodeFetchLimit = 2 * time.Minute
)

// errHolderSlow is the cause of a fetch cancelled by the guard.
var errHolderSlow = errors.New("holder too slow")

// observe records the holder time of a completed fetch.
func (g *slowGuard) observe(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.recent) < slowGuardWindow {
		g.recent = append(g.recent, d)
		return
	}
	g.recent[g.next] = d
	g.next = (g.next + 1) % slowGuardWindow
}

// limit is the holder time a peer fetch may take now.
func (g *slowGuard) limit() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := slowGuardInitial
	if g.initial > 0 {
		d = g.initial
	}
	if n := len(g.recent); n > 0 {
		s := slices.Clone(g.recent)
		slices.Sort(s)
		d = max(slowGuardFloor, slowGuardFactor*s[n/2])
	}
	return d
}

// holderClock is the time one fetch has taken minus the time it waited on
// this download's own rate limiter.
type holderClock struct {
	mu        sync.Mutex
	start     time.Time
	waited    time.Duration
	waitSince time.Time // zero when not waiting
}

func newHolderClock() *holderClock { return &holderClock{start: time.Now()} }

// elapsed is the holder's share of the fetch so far.
func (c *holderClock) elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := time.Since(c.start) - c.waited
	if !c.waitSince.IsZero() {
		d -= time.Since(c.waitSince)
	}
	return d
}

func (c *holderClock) pause() {
	c.mu.Lock()
	c.waitSince = time.Now()
	c.mu.Unlock()
}

func (c *holderClock) resume() {
	c.mu.Lock()
	c.waited += time.Since(c.waitSince)
	c.waitSince = time.Time{}
	c.mu.Unlock()
}

// guard calls cancel(errHolderSlow) once the holder's share reaches limit.
// The timer re-arms for what is left whenever it fires early, which it
// does when the fetch spent part of the time waiting on our limiter.
func (c *holderClock) guard(limit time.Duration, cancel context.CancelCauseFunc) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	var check func()
	check = func() {
		left := limit - c.elapsed()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stopped:
		case left <= 0:
			cancel(errHolderSlow)
		default:
			t = time.AfterFunc(left, check)
		}
	}
	mu.Lock()
	t = time.AfterFunc(limit, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// paced returns how a piece body is paced to l, the download's limiter,
// with clock paused while it waits (nil: no limiter, no pacing). It is
// FetchPiece's Pace hook, so every wait on our limiter is timed.
func paced(ctx context.Context, l *xrate.Limiter, clock *holderClock) func(io.Reader) io.Reader {
	if l == nil {
		return nil
	}
	return func(r io.Reader) io.Reader { return &pacedBody{Reader: r, ctx: ctx, l: l, clock: clock} }
}

type pacedBody struct {
	io.Reader
	ctx   context.Context
	l     *xrate.Limiter
	clock *holderClock
}

// Read reads at most a burst and then waits for the limiter to allow the
// bytes, with the holder clock paused. It does not use WaitN: WaitN fails
// at once when the wait would pass the context's deadline, which would
// turn our own limit into a failed piece.
func (b *pacedBody) Read(p []byte) (int, error) {
	if burst := b.l.Burst(); len(p) > burst && burst > 0 {
		p = p[:burst]
	}
	n, err := b.Reader.Read(p)
	if n <= 0 {
		return n, err
	}
	r := b.l.ReserveN(time.Now(), n)
	if !r.OK() {
		return n, err
	}
	if d := r.Delay(); d > 0 {
		b.clock.pause()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			r.Cancel()
			b.clock.resume()
			return n, b.ctx.Err()
		}
		b.clock.resume()
	}
	return n, err
}
