package progress_test

import (
	"slices"
	"testing"

	. "github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// woken reports whether the one-shot wake-up w has fired.
func woken(w <-chan struct{}) bool {
	select {
	case <-w:
		return true
	default:
		return false
	}
}

// Unassign gives the load back without waking anyone: the caller's own
// waiter, registered before it scheduled, would send it straight back to
// the piece it could not offer. A report's release (Update) still wakes.
func TestUnassignWakesNoOne(t *testing.T) {
	m := setup(t, 1)
	m.InitClient(task, "c", "pc", false, false, 0)
	w, stop := m.Waiter(task)
	defer stop()
	if d := assign1(m, "c", 0, true, lim, 5); d != super {
		t.Fatalf("want the supernode, got %q", d)
	}
	m.Unassign(task, "c", 0)
	if _, s := m.Loads(task, super); s != 0 {
		t.Fatalf("supernode load %d after Unassign", s)
	}
	if woken(w) {
		t.Fatal("Unassign woke a waiter")
	}
	if d := assign1(m, "c", 0, true, lim, 5); d != super {
		t.Fatalf("want the supernode again, got %q", d)
	}
	if _, err := m.Update(task, "c", 0, Failed); err != nil {
		t.Fatal(err)
	}
	if !woken(w) {
		t.Fatal("a reported failure freed a slot and woke no one")
	}
}

// DropHolder drops a peer as a holder of one task only, and wakes waiters:
// the supernode may be the source of its pieces now.
func TestDropHolderIsPerTask(t *testing.T) {
	const other = "t2"
	m := setup(t, 2)
	m.InitTask(other)
	m.SetCDNPiece(other, 0)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(other, "a2", "pa", false, false, 0)
	for _, r := range []struct {
		task, cid string
		num       int
	}{{task, "a", 0}, {task, "a", 1}, {other, "a2", 0}} {
		if _, err := m.Update(r.task, r.cid, r.num, Success); err != nil {
			t.Fatal(err)
		}
	}
	w, stop := m.Waiter(task)
	defer stop()
	m.DropHolder(task, "pa")
	for num := range 2 {
		if h := m.Holders(task, num); len(h) != 0 {
			t.Errorf("piece %d of %s still held by %v", num, task, h)
		}
	}
	if h := m.Holders(other, 0); !slices.Equal(h, []string{"pa"}) {
		t.Errorf("piece 0 of %s held by %v, want pa still", other, h)
	}
	if !woken(w) {
		t.Error("dropping a holder woke no one")
	}
	if !m.DownSince("pa").IsZero() {
		t.Error("pa went down: it still serves another task")
	}
}
