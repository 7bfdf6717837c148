// Package pull answers a client's /peer/task call: it records the result
// the client reports for its last piece, asks the scheduler which pieces
// to fetch next and from which holder, holds the call as a long-poll while
// there is nothing to give, and builds the answer (piece infos with their
// holder's address, or the finish data). The choice of pieces and holders
// itself lives in supernode/mgr/scheduler.
package pull

// The registries (DfgetTasks, Peers) are plain in-memory stores: the tests
// use the real ones.
//go:generate go tool mockgen -source=pull.go -destination=mock_deps_test.go -package=pull -exclude_interfaces=DfgetTasks,Peers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// Tasks is the task manager as the pull reads it.
type Tasks interface {
	Snapshot(id string) (task.Snapshot, error)
	Access(id string) (task.Snapshot, error)
	SuperCID(taskID string) string
}

// Scheduler picks pieces and holders for a client.
type Scheduler interface {
	Schedule(taskID, cid string) ([]scheduler.Assignment, error)
}

// Progress is the progress store as the pull uses it.
type Progress interface {
	Update(taskID, cid string, num int, st progress.Status) (string, error)
	Waiter(taskID string) (<-chan struct{}, func())
	Unassign(taskID, cid string, num int)
	DropHolder(taskID, peerID string)
	EndStream(cid string)
	SuperPID() string
	Alone(taskID, cid string) bool
}

// DfgetTasks is the (client, task) registry.
type DfgetTasks interface {
	Caller(cid, taskID string, from netip.Addr) (dfgettask.Task, error)
	GetByPeer(peerID, taskID string) (dfgettask.Task, error)
	SetStatus(cid, taskID, status string) error
}

// Peers is the peer registry.
type Peers interface {
	Get(id string) (types.PeerInfo, error)
}

// Digests gives the digests of a piece the CDN wrote (or, in the source
// pattern, read): its "md5:len" (computed on first demand) and its BLAKE3
// digest, over the same bytes; and the whole file's md5, computed on demand
// too, for the clients that check it.
type Digests interface {
	PieceMd5(taskID string, num int) string
	PieceDigest(taskID string, num int) digest.Digest
	FileMd5(ctx context.Context, taskID string) (string, error)
	PrepareFileMd5(taskID string)
}

// Prober checks whether a peer a client failed to fetch from is gone.
type Prober interface {
	Probe(peerID string)
}

// Config of the pull.
type Config struct {
	AdvertiseIP  string
	DownloadPort int
	// PieceWait bounds the long-poll (0: answer 602 at once).
	PieceWait     time.Duration
	SourcePattern bool
}

// Metrics are the pull's collectors (any may be nil: New fills it with an
// unread one), and the labels that bound their peer values.
type Metrics struct {
	ScheduleDuration *prometheus.HistogramVec
	PiecesScheduled  *prometheus.CounterVec
	Labels           *metrics.Labels
}

// Deps are the managers the pull reads and updates.
type Deps struct {
	Tasks     Tasks
	Scheduler Scheduler
	Progress  Progress
	Dfget     DfgetTasks
	Peers     Peers
	Digests   Digests
	Prober    Prober
}

// Manager answers /peer/task.
type Manager struct {
	Deps
	cfg     Config
	metrics Metrics
	now     func() time.Time
}

// New returns a pull manager.
func New(cfg Config, d Deps, mx Metrics) *Manager {
	mx.ScheduleDuration = metrics.OrHistogramVec(mx.ScheduleDuration, "peer")
	mx.PiecesScheduled = metrics.OrCounterVec(mx.PiecesScheduled, "holder")
	mx.Labels = metrics.OrLabels(mx.Labels)
	return &Manager{Deps: d, cfg: cfg, metrics: mx, now: time.Now}
}

// md5Wait bounds how long a 600 waits for a whole-file md5 being computed.
const md5Wait = 3 * time.Second

// Query is a /peer/task call, made from address From
// (dfgettask.ParseAddr), which must be SrcCID's (dfgettask.Caller).
type Query struct {
	TaskID, SrcCID, DstCID, Range string
	Status, Result                int
	From                          netip.Addr
}

// Result is the answer to a /peer/task call.
type Result struct {
	// Code is 600 (finish), 601 (continue) or 602 (wait).
	Code int
	// Pieces to fetch, with 601 (none: the client runs its limit).
	Pieces []types.PieceInfo
	// Finish is the file's digest and length, with 600.
	Finish *types.FinishData
	// Held is how long the call was held as a long-poll (waiting for a
	// piece, not working), so the API can tell the client which part of
	// its latency was intentional.
	Held time.Duration
}

// Data is the envelope's data for r: nil, the pieces or the finish data.
func (r Result) Data() any {
	switch {
	case r.Finish != nil:
		return *r.Finish
	case len(r.Pieces) > 0:
		return r.Pieces
	}
	return nil
}

func errorf(code int, format string, a ...any) error {
	return &task.Error{Code: code, Err: fmt.Errorf(format, a...)}
}

// Pull handles GET /peer/task: the report it carries, then the pieces to
// fetch next, long-polled for up to PieceWait when there are none yet.
func (m *Manager) Pull(ctx context.Context, q Query) (Result, error) {
	if q.Status != types.TaskStatusStart && q.Status != types.TaskStatusRunning && q.Status != types.TaskStatusFinish {
		return Result{}, errorf(types.CodeParamError, "invalid status %d", q.Status)
	}
	// Access both checks that the task exists (its error comes before the
	// client's) and marks it used: no separate Snapshot first.
	t, err := m.Tasks.Access(q.TaskID)
	if err != nil {
		return Result{}, err
	}
	dt, err := m.Dfget.Caller(q.SrcCID, q.TaskID, q.From)
	if err != nil {
		return Result{}, &task.Error{Code: types.CodeTargetNotFound, Err: err}
	}
	if res, answered, err := m.report(ctx, q, t, dt); answered || err != nil {
		return res, err
	}
	start := m.now()
	defer m.observeSchedule(dt.PeerID, start)
	return m.poll(ctx, t, dt)
}

// observeSchedule records a call's scheduling time under the calling
// peer's IP, as v1 does (not the superNodeIp the client named, which is
// any text); a peer already gone is not recorded, as in v1.
func (m *Manager) observeSchedule(peerID string, start time.Time) {
	if p, err := m.Peers.Get(peerID); err == nil {
		m.metrics.ScheduleDuration.WithLabelValues(m.metrics.Labels.Peer.Value(p.IP)).
			Observe(float64(m.now().Sub(start).Microseconds()) / 1000)
	}
}

// report records what the call reports: the client starts, has or failed
// a piece, or finished (which answers the call).
func (m *Manager) report(ctx context.Context, q Query, t task.Snapshot, dt dfgettask.Task) (res Result, answered bool, err error) {
	switch q.Status {
	case types.TaskStatusStart:
		_ = m.Dfget.SetStatus(q.SrcCID, q.TaskID, dfgettask.StatusRunning)
	case types.TaskStatusRunning:
		return Result{}, false, m.reportPiece(q, t.PieceSize)
	case types.TaskStatusFinish:
		s := dfgettask.StatusFailed
		if q.Result == types.ResultSuc {
			s = dfgettask.StatusSuccess
		}
		_ = m.Dfget.SetStatus(q.SrcCID, q.TaskID, s)
		m.Progress.EndStream(q.SrcCID)
		if s != dfgettask.StatusSuccess {
			return Result{}, true, errorf(types.CodeSystemError, "client reported failure")
		}
		res, err := m.finish(ctx, t, dt)
		return res, true, err
	}
	return Result{}, false, nil
}

// reportPiece records the result of the piece in q's range.
func (m *Manager) reportPiece(q Query, pieceSize int32) error {
	var st progress.Status
	switch q.Result {
	case types.ResultSuc:
		st = progress.Success
	case types.ResultSemiSuc:
		// v1: 503 is "in my memory"; the client becomes a holder
		// only on /peer/piece/suc, once the piece is in its file.
		st = progress.SemiSuccess
	case types.ResultFail:
		st = progress.Failed
		if q.DstCID == "" {
			// Our stream's give-back (the window was full); a
			// fetch that failed names its holder.
			st = progress.GivenBack
		}
	default:
		return errorf(types.CodeParamError, "invalid result %d for a running task", q.Result)
	}
	num, err := piece.NumFromRange(q.Range, pieceSize)
	if err != nil {
		return errorf(types.CodeParamError, "range: %w", err)
	}
	dst, err := m.Progress.Update(q.TaskID, q.SrcCID, num, st)
	if err != nil {
		return errorf(types.CodeTargetNotFound, "%w", err)
	}
	// A stream's give-back comes back with no dst: nothing to probe.
	if (st == progress.Failed || st == progress.GivenBack) && dst != "" && dst != m.Progress.SuperPID() {
		m.Prober.Probe(dst)
	}
	return nil
}

// finish is the 600 answer. Its md5 is the whole file's: the one the CDN
// computed (the task expects an md5, or the source pattern), else, for a
// client that did not negotiate BLAKE3 (a Dragonfly 1.x dfget checks the
// file against it), computed on demand once per task. A client that
// negotiated BLAKE3 gets "" then: every piece it took was checked, and it
// hashes the file itself only against --md5. A md5 not ready within
// md5Wait is answered 602: the client polls again (v1 does on 602) instead
// of timing out its call (5 s in v1) while a large file is read.
func (m *Manager) finish(ctx context.Context, t task.Snapshot, dt dfgettask.Task) (Result, error) {
	sum := t.RealMd5
	if sum == "" && !dt.Blake3 {
		wctx, cancel := context.WithTimeout(ctx, md5Wait)
		defer cancel()
		var err error
		sum, err = m.Digests.FileMd5(wctx, t.ID)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return Result{Code: types.CodePeerWait}, nil
		case err != nil:
			return Result{}, errorf(types.CodeSystemError, "md5 of task %s: %w", t.ID, err)
		}
	}
	return Result{Code: types.CodePeerFinish, Finish: &types.FinishData{Md5: sum, FileLength: t.FileLength}}, nil
}
