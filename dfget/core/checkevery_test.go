package core

import (
	"testing"
	"time"
)

// A dfget checks in with its peer server a third of its alive time, 1 s
// to 30 s; with an alive time of 0 (a server that never idles out) every
// 30 s, not every second.
func TestCheckEvery(t *testing.T) {
	for alive, want := range map[time.Duration]time.Duration{
		0:                30 * time.Second,
		-time.Second:     30 * time.Second,
		time.Second:      time.Second,
		20 * time.Second: 20 * time.Second / 3,
		5 * time.Minute:  30 * time.Second,
	} {
		if got := checkEvery(alive); got != want {
			t.Errorf("checkEvery(%v) = %v, want %v", alive, got, want)
		}
	}
}
