package progress

import "testing"

// movedClient is cid x registered for task A, then for task B (x's
// state is then B's); y stays a client of A.
func movedClient(t *testing.T) *Manager {
	t.Helper()
	m := New("super")
	for _, id := range []string{"A", "B"} {
		m.InitTask(id)
		m.SetCDNPiece(id, 0)
	}
	for _, c := range []struct{ task, cid, peer string }{{"A", "x", "pa"}, {"A", "y", "py"}, {"B", "x", "pb"}} {
		if err := m.InitClient(c.task, c.cid, c.peer, false, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// Dropping a task (GC or DELETE /api/v1/tasks) keeps the state of a cid
// that registered for another task since: its client there goes on,
// rather than being answered "unknown client".
func TestDeleteTaskKeepsTheCidsLaterTask(t *testing.T) {
	m := movedClient(t)
	m.DeleteTask("A")
	if _, err := m.ClientView("B", "x", 4, nil); err != nil {
		t.Errorf("client x of task B after task A was dropped: %v", err)
	}
}

// GC of a cid's client of one task (its task or its peer collected) keeps
// the cid's client of a later task; its client of that task goes.
func TestDeleteClientOnlyOfItsTask(t *testing.T) {
	m := movedClient(t)
	m.DeleteClient("A", "x")
	if _, err := m.ClientView("B", "x", 4, nil); err != nil {
		t.Fatalf("client x of task B after x's client of task A was dropped: %v", err)
	}
	m.DeleteClient("B", "x")
	if _, err := m.ClientView("B", "x", 4, nil); err == nil {
		t.Error("client x of task B kept after it was dropped")
	}
}

// A cid that left a task for another no longer counts among the first
// task's clients.
func TestMovedCidLeavesItsTask(t *testing.T) {
	m := movedClient(t)
	m.FinishCDN("A", 1, true)
	if !m.Alone("A", "y") {
		t.Error("y is not alone in task A: x, now a client of B, still counts there")
	}
}
