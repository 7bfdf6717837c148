package progress_test

import (
	"slices"
	"testing"

	. "github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// A stream client gives a piece back (its writer's window was full): the
// holder it was assigned from was never asked for it, so it is neither
// blacklisted for that client nor counted against for the others.
func TestStreamGiveBackDoesNotBlameHolder(t *testing.T) {
	m := setup(t, 4)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(task, "s", "ps", false, true, 2)
	m.InitClient(task, "y", "py", false, false, 0)
	if _, err := m.Update(task, "a", 0, Success); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "s", 0, true, lim, 5); d != "pa" {
		t.Fatalf("want pa, got %q", d)
	}
	if dst, err := m.Update(task, "s", 0, GivenBack); err != nil || dst != "" {
		t.Fatalf("give-back: dst %q (someone to probe), %v", dst, err)
	}
	if d := assign1(m, "s", 0, true, lim, 5); d != "pa" {
		t.Errorf("after a window give-back, s no longer offered pa: %q", d)
	}
	m.Unassign(task, "s", 0)
	// Elimination limit 1: one service error would drop pa for y.
	if d := assign1(m, "y", 0, true, lim, 1); d != "pa" {
		t.Errorf("after s's window give-back, pa eliminated for y: %q; holders %v", d, m.Holders(task, 0))
	}
}

// A give-back takes the piece off the client's running pieces: it is
// offered again and the holder's load is released.
func TestStreamGiveBackReleasesPiece(t *testing.T) {
	m := setup(t, 4)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(task, "s", "ps", false, true, 2)
	if _, err := m.Update(task, "a", 0, Success); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "s", 0, true, lim, 5); d != "pa" {
		t.Fatalf("want pa, got %q", d)
	}
	if _, err := m.Update(task, "s", 0, GivenBack); err != nil {
		t.Fatal(err)
	}
	v, _ := m.ClientView(task, "s", 0, nil)
	if !slices.Contains(nums(v), 0) {
		t.Errorf("piece 0 not offered again after its give-back: %v", nums(v))
	}
}

// Window give-backs do not count as the stream client's errors: six of
// them (over failureCountLimit, 5) made it supernode-only for good, since
// successes from the supernode never clear the count.
func TestStreamGiveBacksAreNotClientErrors(t *testing.T) {
	m := setup(t, 20)
	m.InitClient(task, "a", "pa", false, false, 0)
	for i := range 20 {
		if _, err := m.Update(task, "a", i, Success); err != nil {
			t.Fatal(err)
		}
	}
	m.InitClient(task, "s", "ps", false, true, 8)
	for range 6 {
		if d := assign1(m, "s", 0, true, lim, 100); d == "" {
			t.Fatal("no assign")
		}
		if _, err := m.Update(task, "s", 0, GivenBack); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := m.ClientView(task, "s", 0, nil)
	if v.ClientErrors != 0 {
		t.Errorf("ClientErrors %d after 6 window give-backs, want 0", v.ClientErrors)
	}
}

// From a client that is not a stream, a failure without a holder named
// is still a failure of the holder it was assigned from.
func TestGiveBackFromFileClientIsFailure(t *testing.T) {
	m := setup(t, 4)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(task, "f", "pf", false, false, 0)
	if _, err := m.Update(task, "a", 0, Success); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "f", 0, true, lim, 5); d != "pa" {
		t.Fatalf("want pa, got %q", d)
	}
	if dst, err := m.Update(task, "f", 0, GivenBack); err != nil || dst != "pa" {
		t.Fatalf("dst %q, %v", dst, err)
	}
	v, _ := m.ClientView(task, "f", 0, nil)
	if v.ClientErrors != 1 {
		t.Errorf("ClientErrors %d, want 1", v.ClientErrors)
	}
}
