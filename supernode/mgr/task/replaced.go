package task

import "github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"

// dropReplaced retires the peer of old, an earlier registration of the
// same client and task that the registration on peer peerID replaced
// (each registration makes a new peer). The supernode can no longer point
// anyone at old's peer for the task: its record of the client now names
// the new peer. Left a holder, with no load, it was picked for its pieces
// every time and they were never offered. A peer with no other client
// left goes down too, so the peer GC collects it; one that still has
// clients of other tasks keeps serving those.
func (m *Manager) dropReplaced(old dfgettask.Task, peerID string) {
	if old.PeerID == "" || old.PeerID == peerID {
		return
	}
	m.progress.DropHolder(old.TaskID, old.PeerID)
	if len(m.dfget.ByPeer(old.PeerID)) == 0 {
		m.progress.PeerDown(old.PeerID)
	}
}
