package dfdaemonbench

import "testing"

// The bound must count the peer server's ring at its real size, twice the
// window (dfget/core/uploader: newRing(2*window)), or the bench passes a
// dfdaemon against a bound lower than the design allows and prints a
// formula the docs do not give.
func TestRSSBound(t *testing.T) {
	bound, pieces := rssBound(8)
	if pieces != "8+6+16" {
		t.Errorf("per-stream pieces %q, want 8+6+16", pieces)
	}
	if want := int64(8*(8+6+16)) * pieceSize; bound != want {
		t.Errorf("bound %d MiB, want %d MiB", bound>>20, want>>20)
	}
}
