package downloader

import (
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
// times (4 x the median of recent ones), so a uniformly slow network or a
// --locallimit does not make every peer look slow. Fetches from the
// supernode are never cut: it is the holder of last resort.
type slowGuard struct {
	mu     sync.Mutex
	recent []time.Duration // ring of the last completed fetch times
	next   int
}

const (
	slowGuardWindow = 16
	// slowGuardInitial applies before any piece completed.
	slowGuardInitial = 5 * time.Second
	slowGuardFloor   = 3 * time.Second
	slowGuardFactor  = 4
)

// observe records a completed fetch.
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

// limit is the time a peer fetch of pieceSize bytes may take now; the
// local rate limiter's own pace for a piece (times the factor) is always
// allowed.
func (g *slowGuard) limit(pieceSize int32, l *xrate.Limiter) time.Duration {
	g.mu.Lock()
	d := slowGuardInitial
	if n := len(g.recent); n > 0 {
		s := slices.Clone(g.recent)
		slices.Sort(s)
		d = max(slowGuardFloor, slowGuardFactor*s[n/2])
	}
	g.mu.Unlock()
	if l != nil && l.Limit() != xrate.Inf && l.Limit() > 0 {
		d = max(d, time.Duration(slowGuardFactor*float64(pieceSize)/float64(l.Limit())*float64(time.Second)))
	}
	return d
}
