package dfgettask

import (
	"errors"
	"testing"
)

func TestDfgetTasks(t *testing.T) {
	m := New(Metrics{}, "super")
	if err := m.Add(Task{CID: "c"}); err == nil {
		t.Fatal("incomplete task accepted")
	}
	if err := m.Add(Task{CID: "c", TaskID: "t", PeerID: "p", Path: "/peer/file/x"}); err != nil {
		t.Fatal(err)
	}
	got, err := m.GetByPeer("p", "t")
	if err != nil || got.CID != "c" || got.Status != StatusWaiting {
		t.Fatalf("by peer: %+v %v", got, err)
	}
	if err := m.SetStatus("c", "t", StatusSuccess); err != nil {
		t.Fatal(err)
	}
	_ = m.SetStatus("c", "t", StatusFailed)
	if got, _ := m.Get("c", "t"); got.Status != StatusSuccess {
		t.Fatalf("success is final: %s", got.Status)
	}
	if len(m.ByTask("t")) != 1 || len(m.ByPeer("p")) != 1 {
		t.Fatal("indexes")
	}
	m.Delete("c", "t")
	if _, err := m.Get("c", "t"); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted task found")
	}
	if _, err := m.GetByPeer("p", "t"); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted task found by peer")
	}
}
