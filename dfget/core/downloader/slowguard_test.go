package downloader

import (
	"testing"
	"time"

	xrate "golang.org/x/time/rate"
)

func TestSlowGuardLimit(t *testing.T) {
	var g slowGuard
	if got := g.limit(4<<20, nil); got != slowGuardInitial {
		t.Fatalf("before any piece: %v, want %v", got, slowGuardInitial)
	}
	for _, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		g.observe(d)
	}
	if got := g.limit(4<<20, nil); got != slowGuardFloor {
		t.Fatalf("fast pieces: %v, want the floor %v", got, slowGuardFloor)
	}
	for range 2 * slowGuardWindow {
		g.observe(2 * time.Second)
	}
	if got := g.limit(4<<20, nil); got != 8*time.Second {
		t.Fatalf("2 s pieces: %v, want 4 x median = 8s", got)
	}
	if len(g.recent) != slowGuardWindow {
		t.Fatalf("ring holds %d, want %d", len(g.recent), slowGuardWindow)
	}
	// A 1 MB/s local limit needs about 4 s per 4 MiB piece: 4x that is allowed.
	if got := g.limit(4<<20, xrate.NewLimiter(1<<20, 1<<20)); got != 16*time.Second {
		t.Fatalf("with a 1 MiB/s limiter: %v, want 16s", got)
	}
	if got := g.limit(4<<20, xrate.NewLimiter(xrate.Inf, 0)); got != 8*time.Second {
		t.Fatalf("with an unlimited limiter: %v", got)
	}
}
