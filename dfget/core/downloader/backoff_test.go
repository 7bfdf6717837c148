package downloader

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestBackOffRange pins the 602/603 back-off docs/dfget.md gives: 20 ms
// doubling to 640 ms, plus up to as much jitter, so every wait is in
// [20 ms, 1280 ms).
func TestBackOffRange(t *testing.T) {
	none := func(int) int { return 0 }
	most := func(n int) int { return n - 1 }
	for wait, lo := range []time.Duration{20, 40, 80, 160, 320, 640, 640, 640} {
		lo *= time.Millisecond
		if got := backOffDelay(wait, none); got != lo {
			t.Errorf("wait %d without jitter: %v, want %v", wait, got, lo)
		}
		if got, want := backOffDelay(wait, most), 2*lo-time.Millisecond; got != want {
			t.Errorf("wait %d with the most jitter: %v, want %v", wait, got, want)
		}
	}
	for wait := range 100 {
		if d := backOffDelay(wait, rand.IntN); d < 20*time.Millisecond || d >= 1280*time.Millisecond {
			t.Fatalf("wait %d: %v outside [20ms, 1280ms)", wait, d)
		}
	}
}
