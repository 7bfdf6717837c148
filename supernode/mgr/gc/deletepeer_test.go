package gc

import (
	"errors"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
)

// A peer deleted through the API goes as the peer GC drops one: its
// clients of every task, then its progress (it is a holder no more), then
// its record. The supernode's own peer is refused; an unknown ID is an
// error.
func TestDeletePeerAsGCDoes(t *testing.T) {
	x := newMocks(t)
	x.prog.EXPECT().SuperPID().Return("super").AnyTimes()
	x.dfget.EXPECT().ByPeer("p1").Return([]dfgettask.Task{{CID: "c1", TaskID: "t1", PeerID: "p1"}, {CID: "c2", TaskID: "t2", PeerID: "p1"}})
	gomock.InOrder(
		x.prog.EXPECT().DeleteClient("t1", "c1"),
		x.dfget.EXPECT().Delete("c1", "t1"),
		x.prog.EXPECT().DeleteClient("t2", "c2"),
		x.dfget.EXPECT().Delete("c2", "t2"),
		x.prog.EXPECT().DeletePeer("p1"),
		x.peers.EXPECT().Delete("p1").Return(nil),
	)
	if err := x.m.DeletePeer("p1"); err != nil {
		t.Fatal(err)
	}
	if err := x.m.DeletePeer("super"); err == nil {
		t.Fatal("the supernode's own peer deleted")
	}
	x.dfget.EXPECT().ByPeer("nope").Return(nil)
	x.prog.EXPECT().DeletePeer("nope")
	x.peers.EXPECT().Delete("nope").Return(peer.ErrNotFound)
	if err := x.m.DeletePeer("nope"); !errors.Is(err, peer.ErrNotFound) {
		t.Fatalf("unknown peer: %v", err)
	}
}
