package task

import (
	"net/netip"
	"strings"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// PieceReport is a /peer/piece/suc or /peer/piece/stream call. NoShare
// (share=0 on /peer/piece/suc) records the piece as had without making the
// client a holder: the client's own word, binding whatever its mode. Our
// dfget sends it only from a stream, whose success never makes it a holder
// anyway (progress.Update: its cache's notes do); a client that says it
// serves nothing is still never offered. From is the address the call
// came from (dfgettask.ParseAddr): it must be CID's (dfgettask.Caller).
type PieceReport struct {
	TaskID, CID, DstCID, Range string
	NoShare                    bool
	From                       netip.Addr
}

func (m *Manager) reportTarget(r PieceReport) (dfgettask.Task, int, int64, error) {
	t, err := m.task(r.TaskID)
	if err != nil {
		return dfgettask.Task{}, 0, 0, err
	}
	dt, err := m.dfget.Caller(r.CID, r.TaskID, r.From)
	if err != nil {
		return dfgettask.Task{}, 0, 0, &Error{Code: types.CodeTargetNotFound, Err: err}
	}
	t.mu.Lock()
	ps := t.pieceSize
	t.access = m.now()
	t.mu.Unlock()
	num, err := piece.NumFromRange(r.Range, ps)
	if err != nil {
		return dfgettask.Task{}, 0, 0, errorf(types.CodeParamError, "pieceRange: %w", err)
	}
	s, e, _ := piece.ParseRange(r.Range)
	return dt, num, e - s + 1, nil
}

// PieceSuccess handles GET /peer/piece/suc.
func (m *Manager) PieceSuccess(r PieceReport) error {
	_, num, size, err := m.reportTarget(r)
	if err != nil {
		return err
	}
	st := progress.Success
	if r.NoShare {
		st = progress.SemiSuccess
	}
	dst, err := m.progress.Update(r.TaskID, r.CID, num, st)
	if err != nil {
		return errorf(types.CodeTargetNotFound, "%w", err)
	}
	if r.DstCID == m.SuperCID(r.TaskID) || dst == m.progress.SuperPID() {
		m.metrics.PiecesDownloaded.Add(float64(size))
	}
	return nil
}

// StreamPiece handles POST (add=true) and DELETE /peer/piece/stream.
func (m *Manager) StreamPiece(r PieceReport, add bool) error {
	_, num, _, err := m.reportTarget(r)
	if err != nil {
		return err
	}
	if add {
		err = m.progress.AddHolder(r.TaskID, r.CID, num)
	} else {
		err = m.progress.RemoveHolder(r.TaskID, r.CID, num)
	}
	if err != nil {
		return errorf(types.CodeTargetNotFound, "%w", err)
	}
	return nil
}

// ServiceDown handles GET /peer/service/down, a call from address from.
func (m *Manager) ServiceDown(taskID, cid string, from netip.Addr) error {
	if _, err := m.task(taskID); err != nil {
		return err
	}
	dt, err := m.dfget.Caller(cid, taskID, from)
	if err != nil {
		return &Error{Code: types.CodeTargetNotFound, Err: err}
	}
	m.progress.PeerDown(dt.PeerID)
	return nil
}

// DstPeer resolves the peer ID behind a dst CID of a task ("" if unknown);
// the supernode's CID resolves to its own peer ID.
func (m *Manager) DstPeer(taskID, dstCID string) string {
	if dstCID == m.SuperCID(taskID) || strings.HasPrefix(dstCID, types.SuperNodeCIDPrefix) {
		return m.progress.SuperPID()
	}
	dt, err := m.dfget.Get(dstCID, taskID)
	if err != nil {
		return ""
	}
	return dt.PeerID
}
