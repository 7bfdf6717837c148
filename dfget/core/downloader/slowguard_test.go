package downloader

import (
	"testing"
	"time"
)

func TestSlowGuardLimit(t *testing.T) {
	var g slowGuard
	if got := g.limit(); got != slowGuardInitial {
		t.Fatalf("before any piece: %v, want %v", got, slowGuardInitial)
	}
	for _, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		g.observe(d)
	}
	if got := g.limit(); got != slowGuardFloor {
		t.Fatalf("fast pieces: %v, want the floor %v", got, slowGuardFloor)
	}
	for range 2 * slowGuardWindow {
		g.observe(2 * time.Second)
	}
	if got := g.limit(); got != 8*time.Second {
		t.Fatalf("2 s pieces: %v, want 4 x median = 8s", got)
	}
	if len(g.recent) != slowGuardWindow {
		t.Fatalf("ring holds %d, want %d", len(g.recent), slowGuardWindow)
	}
}
