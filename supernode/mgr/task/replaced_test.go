package task

import (
	"testing"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
)

// A client that registers again for the same task comes on a new peer; its
// old peer stops being a holder of the task (the supernode has no address
// for it there any more, and it was picked for its pieces every time).
// With no other client it goes down, so the peer GC collects it; one that
// still serves another task is only dropped from this one.
func TestRegisterAgainRetiresTheOldPeer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other bool
	}{{"alone", false}, {"serving another task", true}} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeps(t)
			id := running(t, d)
			first, err := d.dfget.Get("c1", id)
			if err != nil {
				t.Fatal(err)
			}
			if tc.other {
				if err := d.dfget.Add(dfgettask.Task{CID: "c9", TaskID: "other", PeerID: first.PeerID, Path: "/peer/file/9"}); err != nil {
					t.Fatal(err)
				}
			}
			d.prog.EXPECT().InitClient(id, "c1", d.peerOf("c1", id), false, false, 0)
			d.prog.EXPECT().DropHolder(id, first.PeerID)
			if !tc.other {
				d.prog.EXPECT().PeerDown(first.PeerID)
			}
			if _, err := d.m.Register(RegisterParams{Req: validReq()}); err != nil {
				t.Fatal(err)
			}
			if again, _ := d.dfget.Get("c1", id); again.PeerID == first.PeerID {
				t.Fatalf("registered again on the same peer %s", again.PeerID)
			}
		})
	}
}
