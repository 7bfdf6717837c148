// Package task is the supernode's task manager: it turns registrations into
// tasks (one per source file, by the v1 task-ID rule), starts the CDN on the
// first registration, answers the /peer/task scheduling call (with a short
// long-poll instead of an immediate "wait"), and records the piece reports
// that make clients holders for others.
package task

//go:generate go tool mockgen -source=task.go -destination=mock_deps_test.go -package=task

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// CDN is what the task manager needs from the CDN manager.
type CDN interface {
	Start(src cdn.Source, done func(cdn.Result)) (cdn.Started, error)
	StartSource(src cdn.Source, done func(cdn.Result)) (cdn.Started, error)
	PieceMd5(taskID string, num int) string
}

// Progress is what the task manager needs from the progress manager.
type Progress interface {
	InitTask(taskID string)
	InitClient(taskID, cid, peerID string, cdnPattern, stream bool, window, start int)
	Update(taskID, cid string, num int, st progress.Status) (string, error)
	AddHolder(taskID, cid string, num int) error
	RemoveHolder(taskID, cid string, num int) error
	Waiter(taskID string) (<-chan struct{}, func())
	Unassign(taskID, cid string, num int)
	PeerDown(peerID string)
	EndStream(cid string)
	SuperPID() string
}

// Scheduler picks pieces for a client.
type Scheduler interface {
	Schedule(taskID, cid string) ([]scheduler.Assignment, error)
}

// Peers is the peer registry.
type Peers interface {
	Register(req types.PeerCreateRequest) (string, error)
	Get(id string) (types.PeerInfo, error)
}

// DfgetTasks is the (client, task) registry.
type DfgetTasks interface {
	Add(t dfgettask.Task) error
	Get(cid, taskID string) (dfgettask.Task, error)
	GetByPeer(peerID, taskID string) (dfgettask.Task, error)
	SetStatus(cid, taskID, status string) error
	Delete(cid, taskID string)
}

// Error carries a protocol code (types.Code*) with its cause.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func errorf(code int, format string, a ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, a...)}
}

// CodeOf is the protocol code of err (500 when it carries none).
func CodeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return types.CodeSystemError
}

// Config of the task manager.
type Config struct {
	AdvertiseIP        string
	DownloadPort       int
	FailAccessInterval time.Duration
	PieceWait          time.Duration
	SourcePattern      bool
}

// Metrics are the task collectors (any may be nil).
type Metrics struct {
	Tasks            *prometheus.GaugeVec
	Registered       prometheus.Counter
	CDNTrigger       prometheus.Counter
	CDNTriggerFailed prometheus.Counter
	ScheduleDuration *prometheus.HistogramVec
	PiecesScheduled  *prometheus.CounterVec
	PiecesDownloaded prometheus.Counter
}

// Task is the supernode's record of one file.
type Task struct {
	mu         sync.Mutex
	id         string
	rawURL     string
	taskURL    string
	md5        string
	identifier string
	headers    map[string]string
	httpLen    int64
	pieceSize  int32
	pieceTotal int
	status     string
	realMd5    string
	fileLength int64
	access     time.Time
	failedAt   time.Time
	failErr    error
	changed    chan struct{}
}

// Manager is the task manager.
type Manager struct {
	cfg      Config
	cdn      CDN
	progress Progress
	sched    Scheduler
	peers    Peers
	dfget    DfgetTasks
	metrics  Metrics
	log      logrus.FieldLogger
	now      func() time.Time

	mu    sync.Mutex
	tasks map[string]*Task
	// probing holds the peers whose server is being checked after a
	// failed piece (see probePeer).
	probing map[string]bool
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	probes  sync.WaitGroup
}

// New returns a task manager.
func New(cfg Config, c CDN, p Progress, s Scheduler, peers Peers, d DfgetTasks, mx Metrics, log logrus.FieldLogger) *Manager {
	return &Manager{cfg: cfg, cdn: c, progress: p, sched: s, peers: peers, dfget: d, metrics: mx, log: log,
		now: time.Now, tasks: map[string]*Task{}, probing: map[string]bool{}, dial: (&net.Dialer{}).DialContext}
}

// idSalt keeps task IDs from being plain hashes of URLs.
const idSalt = "damselfly-supernode-task-id-salt"

// ID is the task ID rule of v1: sha256(salt + taskURL + sign + range + salt),
// sign being md5, else identifier; range only if a Range header is given.
func ID(taskURL, md5, identifier string, headers map[string]string) string {
	sign := md5
	if sign == "" {
		sign = identifier
	}
	r := ""
	if v, ok := headers["Range"]; ok {
		r = v
	}
	sum := sha256.Sum256([]byte(idSalt + taskURL + sign + r + idSalt))
	return hex.EncodeToString(sum[:])
}

// SuperCID is the supernode's CID for a task.
func (m *Manager) SuperCID(taskID string) string {
	return types.SuperNodeCIDPrefix + m.cfg.AdvertiseIP + "~" + taskID
}

// RegisterParams is a validated registration.
type RegisterParams struct {
	Req      types.RegisterRequest
	RemoteIP string // the client's address, used when req.IP is empty
	LocalIP  string // the address the client reached us on
}

// Register handles POST /peer/registry.
func (m *Manager) Register(p RegisterParams) (types.RegisterResponseData, error) {
	req := p.Req
	if err := CheckRequest(req); err != nil {
		return types.RegisterResponseData{}, err
	}
	if _, err := urlutil.Validate(req.RawURL); err != nil {
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "rawUrl: %w", err)
	}
	switch {
	case req.CID == "":
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "cid is empty")
	case req.Path == "":
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "path is empty")
	case req.Port < 0 || req.Port > 65535:
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "invalid port %d", req.Port)
	case req.StartPiece < 0 || (req.StartPiece > 0 && !req.StreamMode):
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "invalid startPiece %d: want >= 0, and only with streamMode", req.StartPiece)
	}
	ip := req.IP
	if ip == "" {
		ip = p.RemoteIP
	}
	if v := net.ParseIP(ip); v == nil || v.To4() == nil {
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "invalid ip %q: want IPv4", ip)
	}
	headers, err := urlutil.ParseHeaders(req.Headers)
	if err != nil {
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "headers: %w", err)
	}
	if err := CheckRange(headers); err != nil {
		return types.RegisterResponseData{}, err
	}
	taskURL := req.TaskURL
	if taskURL == "" {
		taskURL = req.RawURL
	}
	if _, err := urlutil.Validate(taskURL); err != nil {
		return types.RegisterResponseData{}, errorf(types.CodeParamError, "taskUrl: %w", err)
	}
	md5, err := normalizeMd5(req.Md5)
	if err != nil {
		return types.RegisterResponseData{}, err
	}
	src := cdn.Source{
		RawURL: req.RawURL, TaskURL: taskURL, Headers: headers, Md5: md5, Identifier: req.Identifier,
		Insecure: req.Insecure, RootCAs: req.RootCAs,
	}
	if req.Md5 != "" {
		src.Identifier = ""
	}
	src.TaskID = ID(taskURL, src.Md5, src.Identifier, headers)
	t, err := m.ensure(src)
	if err != nil {
		return types.RegisterResponseData{}, err
	}
	peerID, err := m.peers.Register(types.PeerCreateRequest{IP: ip, HostName: req.HostName, Port: req.Port, Version: req.Version})
	if err != nil {
		return types.RegisterResponseData{}, errorf(types.CodeSystemError, "register peer: %w", err)
	}
	superIP := req.SuperNodeIP
	if superIP == "" {
		superIP = p.LocalIP
	}
	if h, _, err := net.SplitHostPort(superIP); err == nil {
		superIP = h
	}
	t.mu.Lock()
	pieceSize, httpLen := t.pieceSize, t.httpLen
	t.mu.Unlock()
	if err := m.dfget.Add(dfgettask.Task{
		CID: req.CID, TaskID: src.TaskID, PeerID: peerID, Path: req.Path, CallSystem: req.CallSystem,
		SupernodeIP: superIP, PieceSize: pieceSize, Dfdaemon: req.Dfdaemon, Stream: req.StreamMode,
	}); err != nil {
		return types.RegisterResponseData{}, errorf(types.CodeSystemError, "add dfget task: %w", err)
	}
	cdnPattern := req.Port == 0 || req.Pattern == "cdn"
	m.progress.InitClient(src.TaskID, req.CID, peerID, cdnPattern, req.StreamMode, req.WindowSize, req.StartPiece)
	if m.metrics.Registered != nil {
		m.metrics.Registered.Inc()
	}
	source := types.CDNSourceSupernode
	if m.cfg.SourcePattern {
		source = types.CDNSourceSource
	}
	return types.RegisterResponseData{TaskID: src.TaskID, FileLength: httpLen, PieceSize: pieceSize, CDNSource: source}, nil
}

// Ensure creates the task of src if needed and makes sure its CDN runs or
// ran (used by preheat, without any client). It returns the task ID.
func (m *Manager) Ensure(src cdn.Source) (string, error) {
	for _, err := range []error{CheckURL("url", src.RawURL), CheckURL("taskUrl", src.TaskURL),
		CheckHeaderMap(src.Headers), CheckRange(src.Headers)} {
		if err != nil {
			return "", err
		}
	}
	if _, err := urlutil.Validate(src.RawURL); err != nil {
		return "", errorf(types.CodeParamError, "url: %w", err)
	}
	if src.TaskURL == "" {
		src.TaskURL = src.RawURL
	}
	md5, err := normalizeMd5(src.Md5)
	if err != nil {
		return "", err
	}
	src.Md5 = md5
	src.TaskID = ID(src.TaskURL, src.Md5, src.Identifier, src.Headers)
	if _, err := m.ensure(src); err != nil {
		return "", err
	}
	return src.TaskID, nil
}

func (m *Manager) ensure(src cdn.Source) (*Task, error) {
	m.mu.Lock()
	t := m.tasks[src.TaskID]
	if t == nil {
		t = &Task{id: src.TaskID, rawURL: src.RawURL, taskURL: src.TaskURL, md5: src.Md5, identifier: src.Identifier,
			headers: src.Headers, httpLen: -1, status: types.CDNStatusWaiting, changed: make(chan struct{})}
		m.tasks[src.TaskID] = t
		m.gauge("", types.CDNStatusWaiting)
		m.progress.InitTask(src.TaskID)
	}
	m.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.access = m.now()
	if t.taskURL != src.TaskURL || t.md5 != src.Md5 || (src.Md5 == "" && t.identifier != src.Identifier) {
		return nil, errorf(types.CodeSystemError, "task id %s conflicts with an existing task", src.TaskID)
	}
	if !t.failedAt.IsZero() && m.now().Sub(t.failedAt) < m.cfg.FailAccessInterval {
		return nil, errorf(types.CodeURLNotReachable, "url is not reachable (retry after %s): %w",
			t.failedAt.Add(m.cfg.FailAccessInterval).Format(time.RFC3339), t.failErr)
	}
	if t.status != types.CDNStatusWaiting && t.status != types.CDNStatusFailed && t.status != types.CDNStatusSourceError {
		return t, nil
	}
	t.rawURL, t.headers = src.RawURL, src.Headers
	if m.metrics.CDNTrigger != nil {
		m.metrics.CDNTrigger.Inc()
	}
	start := m.cdn.Start
	if m.cfg.SourcePattern {
		start = m.cdn.StartSource
	}
	st, err := start(src, func(r cdn.Result) { m.cdnDone(t, r) })
	if err != nil {
		if m.metrics.CDNTriggerFailed != nil {
			m.metrics.CDNTriggerFailed.Inc()
		}
		m.setStatus(t, types.CDNStatusFailed)
		if cdn.IsSourceError(err) {
			t.failedAt, t.failErr = m.now(), err
			m.setStatus(t, types.CDNStatusSourceError)
			return nil, errorf(types.CodeURLNotReachable, "url is not reachable: %w", err)
		}
		return nil, errorf(types.CodeSystemError, "start cdn: %w", err)
	}
	t.failedAt, t.failErr = time.Time{}, nil
	t.httpLen, t.pieceSize = st.HTTPFileLength, st.PieceSize
	t.pieceTotal = piece.Count(st.HTTPFileLength, st.PieceSize)
	if m.cfg.SourcePattern {
		t.pieceTotal = int((st.HTTPFileLength + int64(st.PieceSize) - 1) / int64(st.PieceSize))
	}
	m.setStatus(t, types.CDNStatusRunning)
	return t, nil
}

// setStatus changes a task's CDN status; t.mu is held.
func (m *Manager) setStatus(t *Task, s string) {
	if t.status == s {
		return
	}
	m.gauge(t.status, s)
	t.status = s
	close(t.changed)
	t.changed = make(chan struct{})
}

func (m *Manager) gauge(from, to string) {
	if m.metrics.Tasks == nil {
		return
	}
	if from != "" {
		m.metrics.Tasks.WithLabelValues(from).Dec()
	}
	if to != "" {
		m.metrics.Tasks.WithLabelValues(to).Inc()
	}
}

func (m *Manager) cdnDone(t *Task, r cdn.Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !r.OK {
		if m.metrics.CDNTriggerFailed != nil {
			m.metrics.CDNTriggerFailed.Inc()
		}
		m.setStatus(t, types.CDNStatusFailed)
		return
	}
	t.realMd5, t.fileLength, t.pieceTotal = r.RealMd5, r.FileLength, r.PieceTotal
	if t.httpLen < 0 && !m.cfg.SourcePattern {
		t.httpLen = r.FileLength - int64(r.PieceTotal)*piece.WrapSize
	}
	m.setStatus(t, types.CDNStatusSuccess)
}

func (m *Manager) task(id string) (*Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[id]
	if t == nil {
		return nil, errorf(types.CodeTargetNotFound, "task %s not found", id)
	}
	return t, nil
}

// PullQuery is a /peer/task call.
type PullQuery struct {
	TaskID, SrcCID, DstCID, Range string
	Status, Result                int
}

// Pull handles GET /peer/task. It returns the code (600, 601, 602) and the
// data for it, or an error carrying another code.
func (m *Manager) Pull(ctx context.Context, q PullQuery) (int, any, error) {
	if q.Status != types.TaskStatusStart && q.Status != types.TaskStatusRunning && q.Status != types.TaskStatusFinish {
		return 0, nil, errorf(types.CodeParamError, "invalid status %d", q.Status)
	}
	t, err := m.task(q.TaskID)
	if err != nil {
		return 0, nil, err
	}
	dt, err := m.dfget.Get(q.SrcCID, q.TaskID)
	if err != nil {
		return 0, nil, errorf(types.CodeTargetNotFound, "client %s of task %s not found", q.SrcCID, q.TaskID)
	}
	t.mu.Lock()
	t.access = m.now()
	pieceSize := t.pieceSize
	t.mu.Unlock()
	switch q.Status {
	case types.TaskStatusStart:
		_ = m.dfget.SetStatus(q.SrcCID, q.TaskID, dfgettask.StatusRunning)
	case types.TaskStatusRunning:
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
		default:
			return 0, nil, errorf(types.CodeParamError, "invalid result %d for a running task", q.Result)
		}
		num, err := piece.NumFromRange(q.Range, pieceSize)
		if err != nil {
			return 0, nil, errorf(types.CodeParamError, "range: %w", err)
		}
		dst, err := m.progress.Update(q.TaskID, q.SrcCID, num, st)
		if err != nil {
			return 0, nil, errorf(types.CodeTargetNotFound, "%w", err)
		}
		if st == progress.Failed && dst != "" && dst != m.progress.SuperPID() {
			m.probePeer(dst)
		}
	case types.TaskStatusFinish:
		s := dfgettask.StatusFailed
		if q.Result == types.ResultSuc {
			s = dfgettask.StatusSuccess
		}
		_ = m.dfget.SetStatus(q.SrcCID, q.TaskID, s)
		m.progress.EndStream(q.SrcCID)
		if s == dfgettask.StatusSuccess {
			t.mu.Lock()
			defer t.mu.Unlock()
			return types.CodePeerFinish, types.FinishData{Md5: t.realMd5, FileLength: t.fileLength}, nil
		}
		return 0, nil, errorf(types.CodeSystemError, "client reported failure")
	}
	start := m.now()
	defer func() {
		if m.metrics.ScheduleDuration != nil {
			m.metrics.ScheduleDuration.WithLabelValues(dt.SupernodeIP).Observe(float64(m.now().Sub(start).Microseconds()) / 1000)
		}
	}()
	var deadline <-chan time.Time
	if m.cfg.PieceWait > 0 {
		timer := time.NewTimer(m.cfg.PieceWait)
		defer timer.Stop()
		deadline = timer.C
	}
	for {
		code, data, again, err := m.pullOnce(ctx, t, dt, deadline)
		if !again {
			return code, data, err
		}
	}
}

// pullOnce answers /peer/task once; again asks the caller to retry after a
// wake-up (nothing was available, the deadline has not passed).
func (m *Manager) pullOnce(ctx context.Context, t *Task, dt dfgettask.Task, deadline <-chan time.Time) (int, any, bool, error) {
	t.mu.Lock()
	status, tChanged := t.status, t.changed
	realMd5, fileLength := t.realMd5, t.fileLength
	t.mu.Unlock()
	// A finished CDN long-polls too: a piece that only the supernode had
	// and is being sent to a peer becomes available when that peer reports
	// it, and its waiters are woken then instead of after their back-off.
	pollable := deadline != nil && (status == types.CDNStatusRunning || status == types.CDNStatusWaiting ||
		status == types.CDNStatusSuccess)
	var changed <-chan struct{}
	if pollable {
		// Registered before scheduling, so a change in between is not missed.
		var stop func()
		changed, stop = m.progress.Waiter(t.id)
		defer stop()
	}
	code := types.CodePeerWait
	var data any
	switch status {
	case types.CDNStatusFailed, types.CDNStatusSourceError:
		return 0, nil, false, errorf(types.CodeSystemError, "cdn of task %s failed", t.id)
	case types.CDNStatusWaiting:
	default:
		var err error
		var done bool
		if code, data, done, err = m.schedule(t, dt); err != nil {
			return 0, nil, false, err
		}
		if done && status == types.CDNStatusSuccess {
			_ = m.dfget.SetStatus(dt.CID, t.id, dfgettask.StatusSuccess)
			m.progress.EndStream(dt.CID)
			return types.CodePeerFinish, types.FinishData{Md5: realMd5, FileLength: fileLength}, false, nil
		}
	}
	if code != types.CodePeerWait || !pollable {
		return code, data, false, nil
	}
	if h, ok := ctx.Value(holdKey{}).(*time.Duration); ok {
		defer func(t0 time.Time) { *h += time.Since(t0) }(time.Now())
	}
	select {
	case <-changed:
	case <-tChanged:
	case <-deadline:
		return types.CodePeerWait, nil, false, nil
	case <-ctx.Done():
		return types.CodePeerWait, nil, false, nil
	}
	return 0, nil, true, nil
}

type holdKey struct{}

// WithHoldRecorder returns a context in which Pull adds to *held the time
// it held the call as a long-poll (waiting for a piece, not working), so
// the API can tell the client which part of its latency was intentional.
func WithHoldRecorder(ctx context.Context, held *time.Duration) context.Context {
	return context.WithValue(ctx, holdKey{}, held)
}

// schedule runs the scheduler once and builds the piece infos. A 602,
// whether no piece is available or every holder is busy, is long-polled
// by the caller: a slot frees or a holder appears when another client
// reports, and that wakes the waiters.
func (m *Manager) schedule(t *Task, dt dfgettask.Task) (code int, data any, done bool, err error) {
	as, err := m.sched.Schedule(t.id, dt.CID)
	switch {
	case errors.Is(err, scheduler.ErrDone):
		return types.CodePeerWait, nil, true, nil
	case errors.Is(err, scheduler.ErrWait):
		return types.CodePeerWait, nil, false, nil
	case errors.Is(err, scheduler.ErrBusy):
		return types.CodePeerWait, nil, false, nil
	case errors.Is(err, scheduler.ErrLimited):
		return types.CodePeerContinue, nil, false, nil
	case errors.Is(err, scheduler.ErrCDNFailed):
		return 0, nil, false, errorf(types.CodeSystemError, "cdn of task %s failed", t.id)
	case err != nil:
		return 0, nil, false, errorf(types.CodeTargetNotFound, "%w", err)
	}
	t.mu.Lock()
	pieceSize, httpLen, rawURL := t.pieceSize, t.httpLen, t.rawURL
	wrapped := int64(-1)
	if httpLen >= 0 {
		wrapped = piece.WrappedLength(httpLen, pieceSize)
	}
	t.mu.Unlock()
	super := m.progress.SuperPID()
	infos := make([]types.PieceInfo, 0, len(as))
	for _, a := range as {
		pi := types.PieceInfo{
			Range: piece.Range(a.Num, pieceSize, wrapped), PieceNum: a.Num, PieceSize: pieceSize,
			PieceMd5: m.cdn.PieceMd5(t.id, a.Num),
		}
		if m.cfg.SourcePattern {
			// Plain source ranges, no wrapper (v1's source pattern), but with
			// the digest the CDN read from the source.
			pi.Range = piece.Range(a.Num, pieceSize, httpLen)
		}
		if a.DstPID == super {
			pi.CID, pi.PeerIP, pi.PeerPort, pi.Path = m.SuperCID(t.id), dt.SupernodeIP, m.cfg.DownloadPort, store.RelPath(t.id)
			if pi.PeerIP == "" {
				pi.PeerIP = m.cfg.AdvertiseIP
			}
			if m.cfg.SourcePattern {
				pi.Path = rawURL
			}
		} else {
			dst, derr := m.dfget.GetByPeer(a.DstPID, t.id)
			p, perr := m.peers.Get(a.DstPID)
			if derr != nil || perr != nil {
				// Unlike v1 (bug 7), give the load back when the piece cannot be offered.
				m.progress.Unassign(t.id, dt.CID, a.Num)
				continue
			}
			pi.CID, pi.PeerIP, pi.PeerPort, pi.Path = dst.CID, p.IP, p.Port, dst.Path
		}
		if m.metrics.PiecesScheduled != nil {
			kind := "peer"
			if a.DstPID == super {
				kind = "supernode"
			}
			m.metrics.PiecesScheduled.WithLabelValues(kind).Inc()
		}
		infos = append(infos, pi)
	}
	if len(infos) == 0 {
		return types.CodePeerWait, nil, false, nil
	}
	return types.CodePeerContinue, infos, false, nil
}

// PieceReport is a /peer/piece/suc or /peer/piece/stream call.
type PieceReport struct {
	TaskID, CID, DstCID, Range string
}

func (m *Manager) reportTarget(r PieceReport) (dfgettask.Task, int, int64, error) {
	t, err := m.task(r.TaskID)
	if err != nil {
		return dfgettask.Task{}, 0, 0, err
	}
	dt, err := m.dfget.Get(r.CID, r.TaskID)
	if err != nil {
		return dfgettask.Task{}, 0, 0, errorf(types.CodeTargetNotFound, "client %s of task %s not found", r.CID, r.TaskID)
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
	dst, err := m.progress.Update(r.TaskID, r.CID, num, progress.Success)
	if err != nil {
		return errorf(types.CodeTargetNotFound, "%w", err)
	}
	if (r.DstCID == m.SuperCID(r.TaskID) || dst == m.progress.SuperPID()) && m.metrics.PiecesDownloaded != nil {
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

// probeTimeout bounds the connection attempt of a peer probe.
const probeTimeout = 3 * time.Second

// probePeer checks, in the background and once at a time per peer, whether
// the server of a peer a client just failed to fetch from still accepts
// connections. A refused or unreachable one (its process died, its host
// left the network) is marked down at once, so no other client is sent to
// it; otherwise it would take eliminationLimit failed pieces. A server that
// accepts, or a dial that merely times out (an overloaded host), proves
// nothing and is left to the failure counts.
func (m *Manager) probePeer(peerID string) {
	info, err := m.peers.Get(peerID)
	if err != nil || info.Port <= 0 || info.IP == "" {
		return
	}
	m.mu.Lock()
	if m.probing[peerID] {
		m.mu.Unlock()
		return
	}
	m.probing[peerID] = true
	m.mu.Unlock()
	m.probes.Add(1)
	go func() {
		defer m.probes.Done()
		defer func() {
			m.mu.Lock()
			delete(m.probing, peerID)
			m.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		addr := net.JoinHostPort(info.IP, strconv.Itoa(info.Port))
		conn, err := m.dial(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.ENETUNREACH) {
			return
		}
		m.progress.PeerDown(peerID)
		m.log.WithField("peer", peerID).Warnf("peer server %s is gone (%v): no longer scheduled until it registers again", addr, err)
	}()
}

// WaitProbes waits for the peer probes in flight (tests, shutdown).
func (m *Manager) WaitProbes() { m.probes.Wait() }

// ServiceDown handles GET /peer/service/down.
func (m *Manager) ServiceDown(taskID, cid string) error {
	if _, err := m.task(taskID); err != nil {
		return err
	}
	dt, err := m.dfget.Get(cid, taskID)
	if err != nil {
		return errorf(types.CodeTargetNotFound, "client %s of task %s not found", cid, taskID)
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

// Info returns the API view of a task.
func (m *Manager) Info(id string) (types.TaskInfo, error) {
	t, err := m.task(id)
	if err != nil {
		return types.TaskInfo{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fl := t.fileLength
	if t.status != types.CDNStatusSuccess && t.httpLen >= 0 {
		fl = piece.WrappedLength(t.httpLen, t.pieceSize)
	}
	total := t.pieceTotal
	if t.httpLen < 0 && t.status != types.CDNStatusSuccess {
		total = -1
	}
	return types.TaskInfo{
		ID: t.id, FileLength: fl, HTTPFileLength: t.httpLen, PieceSize: t.pieceSize, PieceTotal: int32(total),
		CdnStatus: t.status, RawURL: urlutil.Redact(t.rawURL), TaskURL: urlutil.Redact(t.taskURL), Md5: t.md5, RealMd5: t.realMd5,
		Identifier: t.identifier, Headers: maskedHeaders(t.headers),
	}, nil
}

// secretHeader matches the names of headers whose values are credentials.
var secretHeader = regexp.MustCompile(`(?i)^(authorization|proxy-authorization|cookie)$|token|secret|password|api-?key`)

// maskedHeaders is h with the values of credential headers masked: the
// task API is open to anyone who can reach the supernode, and the real
// values stay in memory for the CDN only.
func maskedHeaders(h map[string]string) map[string]string {
	if len(h) == 0 {
		return h
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if secretHeader.MatchString(k) {
			v = urlutil.Masked
		}
		out[k] = v
	}
	return out
}

// Wait blocks until the task's CDN is no longer running or ctx ends, and
// returns its final status.
func (m *Manager) Wait(ctx context.Context, id string) (string, error) {
	t, err := m.task(id)
	if err != nil {
		return "", err
	}
	for {
		t.mu.Lock()
		s, ch := t.status, t.changed
		t.mu.Unlock()
		if s != types.CDNStatusRunning && s != types.CDNStatusWaiting {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
}

// Expired lists tasks not accessed since before and whose CDN is not running.
func (m *Manager) Expired(before time.Time) []string {
	m.mu.Lock()
	all := make([]*Task, 0, len(m.tasks))
	for _, t := range m.tasks {
		all = append(all, t)
	}
	m.mu.Unlock()
	var out []string
	for _, t := range all {
		t.mu.Lock()
		if t.access.Before(before) && t.status != types.CDNStatusRunning {
			out = append(out, t.id)
		}
		t.mu.Unlock()
	}
	return out
}

// Has reports whether a task is in memory.
func (m *Manager) Has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.tasks[id]
	return ok
}

// Remove forgets a task.
func (m *Manager) Remove(id string) {
	m.mu.Lock()
	t := m.tasks[id]
	delete(m.tasks, id)
	m.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		m.gauge(t.status, "")
		t.mu.Unlock()
	}
}
