package pull

import (
	"context"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// poll schedules until there is something to answer, waiting between
// tries for a change of the task (a new piece, holder or free slot, or a
// new CDN status) until PieceWait has passed or the call ends.
// t is the task as the call found it: the first try uses it, each retry
// takes a fresh snapshot.
func (m *Manager) poll(ctx context.Context, t task.Snapshot, dt dfgettask.Task) (Result, error) {
	var deadline <-chan time.Time
	if m.cfg.PieceWait > 0 {
		timer := time.NewTimer(m.cfg.PieceWait)
		defer timer.Stop()
		deadline = timer.C
	}
	var held time.Duration
	for {
		res, again, waited, err := m.pullOnce(ctx, t, dt, deadline)
		held += waited
		if !again {
			res.Held = held
			return res, err
		}
		if t, err = m.Tasks.Snapshot(t.ID); err != nil {
			return Result{Held: held}, err
		}
	}
}

// pullOnce answers /peer/task once; again asks the caller to retry after a
// wake-up (nothing was available, the deadline has not passed). held is
// the time it waited.
func (m *Manager) pullOnce(ctx context.Context, t task.Snapshot, dt dfgettask.Task, deadline <-chan time.Time) (res Result, again bool, held time.Duration, err error) {
	taskID := t.ID
	// A finished CDN long-polls too: a piece that only the supernode had
	// and is being sent to a peer becomes available when that peer reports
	// it, and its waiters are woken then instead of after their back-off.
	pollable := deadline != nil && (t.Status == types.CDNStatusRunning || t.Status == types.CDNStatusWaiting ||
		t.Status == types.CDNStatusSuccess)
	var changed <-chan struct{}
	if pollable {
		// Registered before scheduling, so a change in between is not missed.
		var stop func()
		changed, stop = m.Progress.Waiter(taskID)
		defer stop()
	}
	res = Result{Code: types.CodePeerWait}
	switch t.Status {
	case types.CDNStatusFailed, types.CDNStatusSourceError:
		return Result{}, false, 0, errorf(types.CodeSystemError, "cdn of task %s failed", taskID)
	case types.CDNStatusWaiting:
	default:
		var done bool
		if res, done, err = m.answer(t, dt); err != nil {
			return Result{}, false, 0, err
		}
		if done && t.Status == types.CDNStatusSuccess {
			_ = m.Dfget.SetStatus(dt.CID, taskID, dfgettask.StatusSuccess)
			m.Progress.EndStream(dt.CID)
			res, err := m.finish(ctx, t, dt)
			return res, false, 0, err
		}
	}
	if res.Code != types.CodePeerWait || !pollable {
		return res, false, 0, nil
	}
	t0 := time.Now()
	select {
	case <-changed:
	case <-t.Changed:
	case <-deadline:
		return res, false, time.Since(t0), nil
	case <-ctx.Done():
		return res, false, time.Since(t0), nil
	}
	return Result{}, true, time.Since(t0), nil
}
