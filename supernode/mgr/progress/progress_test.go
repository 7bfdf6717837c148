// The store is tested with the scheduler's holder policy, as the
// supernode runs it: an external test package, so it can import the
// scheduler without a cycle.
package progress_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	. "github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
)

const (
	task  = "t1"
	super = "super"
)

var lim = Limits{DownLimit: 4, UpLimit: 2, SuperLimit: 3}

func setup(t *testing.T, pieces int) *Manager {
	t.Helper()
	m := New(super)
	m.InitTask(task)
	for i := range pieces {
		m.SetCDNPiece(task, i)
	}
	return m
}

func nums(v View) []int {
	var out []int
	for _, c := range v.Candidates {
		out = append(out, c.Num)
	}
	return out
}

func TestViewAndAssignFromSupernode(t *testing.T) {
	m := setup(t, 3)
	m.InitClient(task, "c1", "p1", false, false, 0)
	v, err := m.ClientView(task, "c1", 0, nil)
	if err != nil || len(v.Candidates) != 3 {
		t.Fatalf("view %+v %v", v, err)
	}
	if d := assign1(m, "c1", 0, true, lim, 5); d != super {
		t.Fatalf("assign piece 0 -> %q, want the supernode", d)
	}
	if d := assign1(m, "c1", 0, true, lim, 5); d != "" {
		t.Fatalf("piece 0 assigned twice -> %q", d)
	}
	v, _ = m.ClientView(task, "c1", 0, nil)
	if got := nums(v); len(got) != 2 || len(v.Running) != 1 {
		t.Fatalf("after assign: candidates %v running %v", got, v.Running)
	}
	// At its running limit the client only learns that a candidate exists.
	if v, _ := m.ClientView(task, "c1", 1, nil); len(v.Candidates) != 1 || len(v.Running) != 1 {
		t.Fatalf("at the limit: candidates %v running %v", nums(v), v.Running)
	}
	if _, s := m.Loads(task, ""); s != 1 {
		t.Fatalf("super load %d, want 1", s)
	}
	if dst, err := m.Update(task, "c1", 0, Success); err != nil || dst != super {
		t.Fatalf("update: %q %v", dst, err)
	}
	if _, s := m.Loads(task, ""); s != 0 {
		t.Fatalf("super load %d after success, want 0", s)
	}
}

func TestSuperLimitAndFailureReleasesLoad(t *testing.T) {
	m := setup(t, 5)
	m.InitClient(task, "c1", "p1", false, false, 0)
	m.InitClient(task, "c2", "p2", false, false, 0)
	for i := range 3 {
		if d := assign1(m, "c1", i, true, lim, 5); d != super {
			t.Fatalf("piece %d -> %q", i, d)
		}
	}
	if d := assign1(m, "c2", 3, true, lim, 5); d != "" {
		t.Fatalf("supernode over its per-task limit: %q", d)
	}
	// A failure gives the slot back (v1 leaked it until a 30 s reset).
	if _, err := m.Update(task, "c1", 1, Failed); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "c2", 3, true, lim, 5); d != super {
		t.Fatalf("slot not released after a failure: %q", d)
	}
}

func TestPeerHolderPreferredLeastLoadedAndUpLimit(t *testing.T) {
	m := setup(t, 2)
	for _, c := range []string{"a", "b", "x", "y", "z"} {
		m.InitClient(task, c, "p"+c, false, false, 0)
	}
	if _, err := m.Update(task, "a", 0, Success); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(task, "b", 0, Success); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, c := range []string{"x", "y", "z"} {
		got[assign1(m, c, 0, true, Limits{DownLimit: 4, UpLimit: 1, SuperLimit: 3}, 5)]++
	}
	if got["pa"] != 1 || got["pb"] != 1 || got[""] != 1 {
		t.Fatalf("assignments %v: want one each from pa and pb (up limit 1); the third waits for a peer", got)
	}
	if l, _ := m.Loads(task, "pa"); l != 1 {
		t.Fatalf("pa load %d", l)
	}
}

func TestBlacklistEliminationAndPeerDown(t *testing.T) {
	m := setup(t, 1)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(task, "x", "px", false, false, 0)
	m.InitClient(task, "y", "py", false, false, 0)
	if _, err := m.Update(task, "a", 0, Success); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "x", 0, true, lim, 5); d != "pa" {
		t.Fatalf("want pa, got %q", d)
	}
	if _, err := m.Update(task, "x", 0, Failed); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.Loads(task, "pa"); l != 0 {
		t.Fatalf("pa load %d after failure", l)
	}
	// x blacklisted pa: the supernode serves x; y still gets pa.
	if d := assign1(m, "x", 0, true, lim, 5); d != super {
		t.Fatalf("x after failing on pa: %q", d)
	}
	m.Unassign(task, "x", 0) // nobody fetches piece 0 any more
	if d := assign1(m, "y", 0, true, lim, 1); d != super {
		t.Fatalf("pa has 1 service error >= elimination limit 1: got %q", d)
	}
	if h := m.Holders(task, 0); len(h) != 0 {
		t.Fatalf("eliminated holder kept: %v", h)
	}
	m.InitClient(task, "b", "pb", false, false, 0)
	if _, err := m.Update(task, "b", 0, Success); err != nil {
		t.Fatal(err)
	}
	m.PeerDown("pb")
	if m.DownSince("pb").IsZero() {
		t.Fatal("pb not down")
	}
	m.Unassign(task, "y", 0)
	m.InitClient(task, "z", "pz", false, false, 0)
	if d := assign1(m, "z", 0, true, lim, 5); d != super {
		t.Fatalf("down peer offered: %q", d)
	}
}

func TestStreamWindow(t *testing.T) {
	m := setup(t, 10)
	m.InitClient(task, "s", "ps", false, true, 3)
	v, _ := m.ClientView(task, "s", 0, nil)
	if got := nums(v); len(got) != 3 || got[0] != 0 || got[2] != 2 || !v.Stream {
		t.Fatalf("window at start: %v", got)
	}
	for _, n := range []int{1, 2} {
		if _, err := m.Update(task, "s", n, Success); err != nil {
			t.Fatal(err)
		}
	}
	if una, wnd, _ := m.Window("s"); una != 0 || wnd != 3 {
		t.Fatalf("una %d wnd %d, want 0 3", una, wnd)
	}
	if _, err := m.Update(task, "s", 0, Success); err != nil {
		t.Fatal(err)
	}
	if una, _, _ := m.Window("s"); una != 3 {
		t.Fatalf("una %d, want 3", una)
	}
	v, _ = m.ClientView(task, "s", 0, nil)
	if got := nums(v); len(got) != 3 || got[0] != 3 || got[2] != 5 {
		t.Fatalf("window after una=3: %v", got)
	}
	// A stream is a holder of what its cache announced, until it evicts
	// it; its success reports alone do not make it one (of its cache of 3
	// pieces 0-2, piece 2: 0 is the next to leave it).
	m.InitClient(task, "o", "po", false, true, 0)
	if una, wnd, ok := m.Window("o"); !ok || una != 0 || wnd != DefaultWindow {
		t.Fatalf("default window: %d %d %t", una, wnd, ok)
	}
	if d := assign1(m, "o", 2, true, lim, 5); d != super {
		t.Fatalf("a stream's success report made it a holder: %q", d)
	}
	m.Unassign(task, "o", 2)
	if err := m.AddHolder(task, "s", 2); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "o", 2, true, lim, 5); d != "ps" {
		t.Fatalf("want ps as holder, got %q", d)
	}
	m.Unassign(task, "o", 2)
	if err := m.RemoveHolder(task, "s", 2); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "o", 2, true, lim, 5); d != super {
		t.Fatalf("evicted holder offered: %q", d)
	}
	m.Unassign(task, "o", 2)
	if err := m.AddHolder(task, "s", 2); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "o", 2, true, lim, 5); d != "ps" {
		t.Fatalf("re-added holder not offered: %q", d)
	}
	if err := m.AddHolder(task, "nobody", 0); err == nil {
		t.Fatal("unknown cid accepted")
	}
	m.PeerDown("ps")
	if _, _, ok := m.Window("s"); ok {
		t.Fatal("window kept after service down")
	}
}

func TestUpdateRejectsUnwrittenPiece(t *testing.T) {
	m := setup(t, 1)
	m.InitClient(task, "c", "pc", false, false, 0)
	if _, err := m.Update(task, "c", 7, Success); err == nil {
		t.Fatal("success for a piece the cdn never wrote was accepted")
	}
	if _, err := m.Update(task, "c", -1, Failed); err == nil {
		t.Fatal("negative piece accepted")
	}
	if _, err := m.Update(task, "zz", 0, Success); err == nil {
		t.Fatal("unknown client accepted")
	}
}

func TestDoneAndWaiters(t *testing.T) {
	m := New(super)
	m.InitTask(task)
	m.InitClient(task, "c", "pc", false, false, 0)
	w, stop := m.Waiter(task)
	defer stop()
	m.SetCDNPiece(task, 0)
	select {
	case <-w:
	case <-time.After(time.Second):
		t.Fatal("waiter not woken by a new piece")
	}
	if v, _ := m.ClientView(task, "c", 0, nil); v.Done {
		t.Fatal("done before the cdn finished")
	}
	m.FinishCDN(task, 1, true)
	if _, err := m.Update(task, "c", 0, Success); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.ClientView(task, "c", 0, nil); !v.Done {
		t.Fatal("not done with every piece")
	}
	m.DeleteTask(task)
	if _, err := m.ClientView(task, "c", 0, nil); err == nil {
		t.Fatal("client kept after task delete")
	}
}

// assign1 assigns one piece and returns its source ("" if none).
func assign1(m *Manager, cid string, num int, peers bool, l Limits, elim int) string {
	if a := m.Assign(task, cid, []int{num}, l.DownLimit, scheduler.NewHolderPicker(l, elim, peers)); len(a) == 1 {
		return a[0].Dst
	}
	return ""
}

func TestAssignBatchStopsAtDownLimit(t *testing.T) {
	m := setup(t, 6)
	m.InitClient(task, "c", "pc", false, false, 0)
	got := m.Assign(task, "c", []int{5, 4, 3, 2, 1}, lim.DownLimit, scheduler.NewHolderPicker(lim, 5, true))
	if len(got) != 3 || got[0].Num != 5 || got[2].Num != 3 {
		t.Fatalf("batch %v: want pieces 5 4 3 (super limit 3)", got)
	}
	if got := m.Assign(task, "c", []int{0}, 3, scheduler.NewHolderPicker(Limits{DownLimit: 3, UpLimit: 5, SuperLimit: 10}, 5, true)); len(got) != 0 {
		t.Fatalf("over the down limit: %v", got)
	}
	m.EndStream("c")
	v, _ := m.ClientView(task, "c", 0, nil)
	if v.Done || len(v.Running) != 3 {
		t.Fatalf("view %+v", v)
	}
}

func TestInflightCountsAsHolder(t *testing.T) {
	m := setup(t, 3)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(task, "b", "pb", false, false, 0)
	if d := assign1(m, "a", 0, true, lim, 5); d != super {
		t.Fatalf("a: %q", d)
	}
	v, _ := m.ClientView(task, "b", 0, nil)
	if v.Candidates[0].Num != 0 || v.Candidates[0].Holders != 1 || v.Candidates[1].Holders != 0 {
		t.Fatalf("b's view %+v: piece 0 is being fetched by a", v.Candidates)
	}
	if _, err := m.Update(task, "a", 0, Failed); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.ClientView(task, "b", 0, nil); v.Candidates[0].Holders != 0 {
		t.Fatalf("in-flight count kept after failure: %+v", v.Candidates)
	}
	if d := assign1(m, "a", 1, true, lim, 5); d != super {
		t.Fatalf("a: %q", d)
	}
	m.DeleteClient(task, "a")
	if v, _ := m.ClientView(task, "b", 0, nil); v.Candidates[1].Holders != 0 {
		t.Fatalf("in-flight count kept after client delete: %+v", v.Candidates)
	}
}

func TestSuperSeeding(t *testing.T) {
	m := setup(t, 2)
	now := time.Now()
	SetNow(m, func() time.Time { return now })
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(task, "b", "pb", false, false, 0)
	m.InitClient(task, "c", "pc", true, false, 0) // CDN pattern: never serves
	if d := assign1(m, "c", 0, true, lim, 5); d != super {
		t.Fatalf("c: %q", d)
	}
	if d := assign1(m, "a", 0, true, lim, 5); d != super {
		t.Fatalf("a: %q (a CDN-pattern fetcher does not count as a seed)", d)
	}
	if d := assign1(m, "b", 0, true, lim, 5); d != "" {
		t.Fatalf("b got piece 0 from %q while a serving peer fetches it", d)
	}
	if d := assign1(m, "b", 0, false, lim, 5); d != super {
		t.Fatalf("a client served by the supernode only: %q", d)
	}
	m.Unassign(task, "b", 0)
	now = now.Add(SeedFor + time.Second)
	if d := assign1(m, "b", 0, true, lim, 5); d != super {
		t.Fatalf("after %s the fetch no longer holds the supernode back: %q", SeedFor, d)
	}
	m.Unassign(task, "b", 0)
	now = now.Add(-SeedFor - time.Second)
	if _, err := m.Update(task, "a", 0, Success); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "b", 0, true, lim, 5); d != "pa" {
		t.Fatalf("b: %q, want the holder", d)
	}
}

// The candidate scan's holder counts follow every way a holder comes and
// goes (reports, stream announcements, removal, elimination, deletion),
// across word boundaries of the piece bitsets.
func TestCandidateHeldCounts(t *testing.T) {
	const pieces = 130
	m := setup(t, pieces)
	for _, c := range []string{"a", "b", "c", "x"} {
		m.InitClient(task, c, "p"+c, false, false, 0)
	}
	check := func(step string) {
		t.Helper()
		v, err := m.ClientView(task, "x", 0, nil)
		if err != nil || len(v.Candidates) != pieces {
			t.Fatalf("%s: %d candidates, %v", step, len(v.Candidates), err)
		}
		for i, c := range v.Candidates {
			if c.Num != i || c.Held != len(m.Holders(task, i)) || c.Holders != c.Held {
				t.Fatalf("%s: candidate %+v, holders %v", step, c, m.Holders(task, i))
			}
		}
	}
	for _, n := range []int{0, 63, 64, 129} {
		for _, c := range []string{"a", "b"} {
			if _, err := m.Update(task, c, n, Success); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.AddHolder(task, "c", 64); err != nil {
		t.Fatal(err)
	}
	check("reports")
	if err := m.RemoveHolder(task, "a", 63); err != nil {
		t.Fatal(err)
	}
	check("removal")
	m.PeerDown("pb")
	// Assign looks at piece 0's holders and drops the one that is down.
	if d := assign1(m, "x", 0, true, lim, 5); d != "pa" {
		t.Fatalf("piece 0 from %q, want pa", d)
	}
	m.Unassign(task, "x", 0)
	check("elimination")
	m.DeletePeer("pa")
	check("deletion")
	// pb is down but still listed where no Assign looked yet.
	if h := m.Holders(task, 64); len(h) != 2 || slices.Contains(h, "pa") {
		t.Errorf("piece 64 holders %v", h)
	}
}

// A 503 (SemiSuccess) is v1's "in my memory, not yet in my file": the piece
// counts as had by that client (never scheduled to it again, its source's
// load comes back) but nobody is sent to it for that piece until its
// /peer/piece/suc (Success), which v1 may also send first.
func TestSemiSuccessIsNotAHolderUntilSuccess(t *testing.T) {
	m := setup(t, 2)
	m.InitClient(task, "v1", "pv1", false, false, 0)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.InitClient(task, "x", "px", false, false, 0)
	if _, err := m.Update(task, "a", 0, Success); err != nil {
		t.Fatal(err)
	}
	if d := assign1(m, "v1", 0, true, lim, 5); d != "pa" {
		t.Fatalf("v1 piece 0 from %q, want pa", d)
	}
	if dst, err := m.Update(task, "v1", 0, SemiSuccess); err != nil || dst != "pa" {
		t.Fatalf("503: %q %v", dst, err)
	}
	if l, _ := m.Loads(task, "pa"); l != 0 {
		t.Fatalf("pa load %d after the 503, want 0", l)
	}
	if h := m.Holders(task, 0); !slices.Equal(h, []string{"pa"}) {
		t.Fatalf("holders after the 503: %v, want only pa", h)
	}
	if v, _ := m.ClientView(task, "v1", 0, nil); slices.Contains(nums(v), 0) {
		t.Fatalf("piece 0 still a candidate of the client that 503-reported it: %v", nums(v))
	}
	// pa busy (up limit 1): x must not be sent to pv1 for piece 0.
	one := Limits{DownLimit: 4, UpLimit: 1, SuperLimit: 3}
	if d := assign1(m, "x", 0, true, one, 5); d != "pa" {
		t.Fatalf("x piece 0 from %q, want pa", d)
	}
	m.Unassign(task, "x", 0)
	if _, err := m.Update(task, "v1", 0, Success); err != nil {
		t.Fatal(err)
	}
	h := m.Holders(task, 0)
	slices.Sort(h)
	if !slices.Equal(h, []string{"pa", "pv1"}) {
		t.Fatalf("holders after /peer/piece/suc: %v, want pa and pv1", h)
	}
	// Success first, then the 503 of the same piece: a holder at once,
	// and the 503 changes nothing.
	if d := assign1(m, "v1", 1, true, lim, 5); d != super {
		t.Fatalf("v1 piece 1 from %q", d)
	}
	if _, err := m.Update(task, "v1", 1, Success); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(task, "v1", 1, SemiSuccess); err != nil {
		t.Fatal(err)
	}
	if h := m.Holders(task, 1); !slices.Equal(h, []string{"pv1"}) {
		t.Fatalf("piece 1 holders %v", h)
	}
	if v, _ := m.ClientView(task, "v1", 0, nil); len(v.Candidates) != 0 {
		t.Fatalf("v1 candidates %v, want none", nums(v))
	}
}

// Alone: no other client of the task lacks a piece. Until the task's length
// is known every other client lacks; a client is done once it has every
// piece; a client that leaves stops counting.
func TestAlone(t *testing.T) {
	m := setup(t, 3)
	m.InitClient(task, "s", "ps", false, true, 4)
	if !m.Alone(task, "s") {
		t.Fatal("the only client is not alone")
	}
	if m.Alone("other", "s") {
		t.Fatal("alone in an unknown task")
	}
	m.InitClient(task, "f", "pf", false, false, 0)
	for i := range 3 {
		if _, err := m.Update(task, "f", i, Success); err != nil {
			t.Fatal(err)
		}
	}
	if m.Alone(task, "s") {
		t.Fatal("alone while the task's length is unknown")
	}
	m.FinishCDN(task, 3, true)
	if !m.Alone(task, "s") {
		t.Fatal("not alone beside a client that has every piece")
	}
	m.InitClient(task, "l", "pl", false, false, 0)
	if _, err := m.Update(task, "l", 0, SemiSuccess); err != nil {
		t.Fatal(err)
	}
	if m.Alone(task, "s") || m.Alone(task, "f") {
		t.Fatal("alone beside a client lacking pieces")
	}
	m.DeleteClient(task, "l")
	if !m.Alone(task, "s") {
		t.Fatal("a client that left still counts")
	}
}

// A piece number outside the pieces the CDN wrote is refused for every
// status, before it can size any per-piece state (a success, a failure or
// a stream cache's note about piece 2^40 once sized a 128 GiB bitset or a
// slice of 2^40 maps). A failure of a piece the client runs stays
// accepted even when the CDN started over meanwhile: a v1 client reports
// what it was given.
func TestOutOfTaskPieceRefused(t *testing.T) {
	m := setup(t, 2)
	m.InitClient(task, "c", "pc", false, false, 0)
	for _, st := range []Status{Success, SemiSuccess, Failed} {
		if _, err := m.Update(task, "c", 1<<26, st); !errors.Is(err, ErrUnknownPiece) {
			t.Errorf("status %d for piece 2^26: %v, want %v", st, err, ErrUnknownPiece)
		}
	}
	if err := m.AddHolder(task, "c", 1<<20); !errors.Is(err, ErrUnknownPiece) {
		t.Errorf("holder of piece 2^20: %v, want %v", err, ErrUnknownPiece)
	}
	if h := m.Holders(task, 1<<20); len(h) != 0 {
		t.Errorf("holders of piece 2^20: %v", h)
	}
	// Written pieces: a failure not running (reported late) and a stream
	// cache's note are accepted.
	if _, err := m.Update(task, "c", 1, Failed); err != nil {
		t.Errorf("failure of a written piece: %v", err)
	}
	if err := m.AddHolder(task, "c", 1); err != nil {
		t.Errorf("holder of a written piece: %v", err)
	}
	if assign1(m, "c", 0, false, lim, 5) != super {
		t.Fatal("piece 0 not assigned from the supernode")
	}
	m.ResetCDN(task)
	if dst, err := m.Update(task, "c", 0, Failed); err != nil || dst != super {
		t.Errorf("failure of a running piece after a cdn restart: %q %v", dst, err)
	}
	if _, super := m.Loads(task, "pc"); super != 0 {
		t.Errorf("supernode load %d after the failure, want 0", super)
	}
}

// Only InitTask creates a task: the CDN's events, a long-poll and a
// registration about a task GC dropped leave nothing behind.
func TestDroppedTaskNotRecreated(t *testing.T) {
	m := setup(t, 1)
	m.InitClient(task, "c", "pc", false, false, 0)
	m.DeleteTask(task)
	m.ResetCDN(task)
	m.SetCDNPiece(task, 1)
	m.FinishCDN(task, 2, true)
	w, stop := m.Waiter(task)
	select {
	case <-w:
	default:
		t.Error("a waiter on a dropped task is not woken at once")
	}
	stop()
	if err := m.InitClient(task, "d", "pd", false, false, 0); !errors.Is(err, ErrUnknownTask) {
		t.Errorf("client of a dropped task: %v, want %v", err, ErrUnknownTask)
	}
	if n := Tasks(m); n != 0 {
		t.Fatalf("%d tasks after the drop, want 0", n)
	}
}

// A peer deleted (its GC, or DELETE /api/v1/peers/{id}) and then marked
// down by a probe that overlapped the deletion gets no state back: the
// peer GC walks the peer records, so state of a peer without one would be
// kept forever. A peer with state is marked down as before.
func TestPeerDownOfADeletedPeerMakesNoState(t *testing.T) {
	m := setup(t, 1)
	m.InitClient(task, "a", "pa", false, false, 0)
	m.DeletePeer("pa")
	m.PeerDown("pa")
	if m.HasPeer("pa") || !m.DownSince("pa").IsZero() {
		t.Fatal("PeerDown made state for a deleted peer")
	}
	if ids := m.PeerIDs(); len(ids) != 0 {
		t.Fatalf("peers with state: %v", ids)
	}
	m.InitClient(task, "b", "pb", false, false, 0)
	m.PeerDown("pb")
	if m.DownSince("pb").IsZero() || !slices.Equal(m.PeerIDs(), []string{"pb"}) {
		t.Fatalf("pb: down %v, peers with state %v", m.DownSince("pb"), m.PeerIDs())
	}
}
