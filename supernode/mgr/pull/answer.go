package pull

import (
	"errors"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// answer runs the scheduler and builds the piece infos; done reports
// that the client has every piece. A 602, whether no piece is available or
// every holder is busy, is long-polled by the caller: a slot frees or a
// holder appears when another client reports, and that wakes the waiters.
// A holder found stale (it can no longer serve the task) is dropped and,
// when nothing else could be offered, the scheduler runs again at once:
// it now picks another holder or the supernode. Each retry drops a holder,
// so the retries end; staleRetries bounds them anyway, as a holder comes
// back when its client reports a piece.
func (m *Manager) answer(t task.Snapshot, dt dfgettask.Task) (res Result, done bool, err error) {
	for try := 0; ; try++ {
		as, err := m.Scheduler.Schedule(t.ID, dt.CID)
		switch {
		case errors.Is(err, scheduler.ErrDone):
			return Result{Code: types.CodePeerWait}, true, nil
		case errors.Is(err, scheduler.ErrWait), errors.Is(err, scheduler.ErrBusy):
			return Result{Code: types.CodePeerWait}, false, nil
		case errors.Is(err, scheduler.ErrLimited):
			return Result{Code: types.CodePeerContinue}, false, nil
		case errors.Is(err, scheduler.ErrCDNFailed):
			return Result{}, false, errorf(types.CodeSystemError, "cdn of task %s failed", t.ID)
		case err != nil:
			return Result{}, false, errorf(types.CodeTargetNotFound, "%w", err)
		}
		infos, stale := m.offer(t, dt, as)
		if len(infos) > 0 {
			return Result{Code: types.CodePeerContinue, Pieces: infos}, false, nil
		}
		if !stale || try == staleRetries {
			return Result{Code: types.CodePeerWait}, false, nil
		}
	}
}

// staleRetries bounds the scheduler runs a call adds after dropping stale
// holders.
const staleRetries = 8

// offer builds the piece infos of the assignments as; stale reports that
// a holder was dropped because it could not serve the task any more.
func (m *Manager) offer(t task.Snapshot, dt dfgettask.Task, as []scheduler.Assignment) (infos []types.PieceInfo, stale bool) {
	wrapped := int64(-1)
	if t.HTTPLength >= 0 {
		wrapped = piece.WrappedLength(t.HTTPLength, t.PieceSize)
	}
	super := m.Progress.SuperPID()
	if !dt.Blake3 && t.RealMd5 == "" {
		// This client will check the whole-file md5 of its 600: computed
		// while it downloads, not when it asks.
		m.Digests.PrepareFileMd5(t.ID)
	}
	// A stream alone on its task would keep its window for no one: its
	// stream cache costs a copy of every piece.
	noShare := dt.Stream && dt.Blake3 && m.Progress.Alone(t.ID, dt.CID)
	infos = make([]types.PieceInfo, 0, len(as))
	for _, a := range as {
		pi := types.PieceInfo{Range: piece.Range(a.Num, t.PieceSize, wrapped), PieceNum: a.Num, PieceSize: t.PieceSize,
			NoShare: noShare}
		if m.cfg.SourcePattern {
			// Plain source ranges, no wrapper (v1's source pattern), but with
			// the digest the CDN read from the source.
			pi.Range = piece.Range(a.Num, t.PieceSize, t.HTTPLength)
		}
		kind := "peer"
		// A piece without the digest the client checks (a cache file
		// being swapped can lag; a damaged one has no md5) is not
		// offered: the client would have nothing to check it against.
		ok := m.withDigest(&pi, t.ID, dt)
		if ok && a.DstPID == super {
			kind = "supernode"
			m.fromSupernode(&pi, t, dt)
		} else if !ok || !m.fromPeer(&pi, a.DstPID, t.ID) {
			// Give the load back when the piece cannot be offered, or the
			// holder's slot would stay taken until the client reports.
			m.Progress.Unassign(t.ID, dt.CID, a.Num)
			// A holder without a peer record or a client of the task
			// (deleted, or its client registered again as another peer)
			// would be picked again and again: it has no load.
			if ok {
				m.Progress.DropHolder(t.ID, a.DstPID)
				stale = true
			}
			continue
		}
		m.metrics.PiecesScheduled.WithLabelValues(kind).Inc()
		infos = append(infos, pi)
	}
	return infos, stale
}

// withDigest adds the digest the client checks: the BLAKE3 one for a
// client that asked for it at registration, else pieceMd5. A client that
// did not ask (a Dragonfly 1.x dfget) never gets pieceDigest, and the md5
// it checks is computed for it on first demand; one that asked gets no
// pieceMd5, so the md5 of a piece is computed only for clients that check
// it. It reports false when the digest is unknown: such a piece is not
// offered, so no client takes a piece it cannot check as it asked to.
func (m *Manager) withDigest(pi *types.PieceInfo, taskID string, dt dfgettask.Task) bool {
	if !dt.Blake3 {
		pi.PieceMd5 = m.Digests.PieceMd5(taskID, pi.PieceNum)
		return pi.PieceMd5 != ""
	}
	d := m.Digests.PieceDigest(taskID, pi.PieceNum)
	if d.Algorithm() != digest.BLAKE3 {
		return false
	}
	pi.PieceDigest = d.String()
	return true
}

// fromSupernode points pi at the supernode's piece server (or, in the
// source pattern, at the source).
func (m *Manager) fromSupernode(pi *types.PieceInfo, t task.Snapshot, dt dfgettask.Task) {
	pi.CID, pi.PeerIP, pi.PeerPort, pi.Path = m.Tasks.SuperCID(t.ID), dt.SupernodeIP, m.cfg.DownloadPort, store.RelPath(t.ID)
	if pi.PeerIP == "" {
		pi.PeerIP = m.cfg.AdvertiseIP
	}
	if m.cfg.SourcePattern {
		pi.Path = t.RawURL
	}
}

// fromPeer points pi at the server of peer pid; it reports false when the
// peer or its client of the task is gone.
func (m *Manager) fromPeer(pi *types.PieceInfo, pid, taskID string) bool {
	dst, derr := m.Dfget.GetByPeer(pid, taskID)
	p, perr := m.Peers.Get(pid)
	if derr != nil || perr != nil {
		return false
	}
	pi.CID, pi.PeerIP, pi.PeerPort, pi.Path = dst.CID, p.IP, p.Port, dst.Path
	return true
}
