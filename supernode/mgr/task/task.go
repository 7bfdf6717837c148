// Package task is the supernode's task manager: it turns registrations into
// tasks (one per source file, by the v1 task-ID rule), starts the CDN on the
// first registration, and records the piece reports that make clients
// holders for others. The /peer/task call itself is answered by
// supernode/mgr/pull, which reads a task through Snapshot.
package task

// The registries (Peers, DfgetTasks) are plain in-memory stores: the tests
// use the real ones.
//go:generate go tool mockgen -source=task.go -destination=mock_deps_test.go -package=task -exclude_interfaces=Peers,DfgetTasks

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// CDN is what the task manager needs from the CDN manager.
type CDN interface {
	Start(src cdn.Source, done func(cdn.Result)) (cdn.Started, error)
	StartSource(src cdn.Source, done func(cdn.Result)) (cdn.Started, error)
	// Waiting reports whether the task's fill waits to start (for a slot,
	// or for its cluster home's fill).
	Waiting(taskID string) bool
}

// Progress is what the task manager needs from the progress manager.
type Progress interface {
	InitTask(taskID string)
	InitClient(taskID, cid, peerID string, cdnPattern, stream bool, window int) error
	Update(taskID, cid string, num int, st progress.Status) (string, error)
	AddHolder(taskID, cid string, num int) error
	RemoveHolder(taskID, cid string, num int) error
	DropHolder(taskID, peerID string)
	PeerDown(peerID string)
	// DownSince is when the peer went down (zero: it is up).
	DownSince(peerID string) time.Time
	SuperPID() string
}

// Home routes a task's CDN in a cluster: Via is the member to read the
// task's file from (its home, when that is another live member), or ""
// for the origin.
type Home interface {
	Via(taskID string) string
}

// Peers is the peer registry.
type Peers interface {
	Register(req types.PeerCreateRequest) (string, error)
}

// DfgetTasks is the (client, task) registry.
type DfgetTasks interface {
	Add(t dfgettask.Task) error
	Get(cid, taskID string) (dfgettask.Task, error)
	Caller(cid, taskID string, from netip.Addr) (dfgettask.Task, error)
	ByPeer(peerID string) []dfgettask.Task
	ByTask(taskID string) []dfgettask.Task
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
	FailAccessInterval time.Duration
	SourcePattern      bool
	// Home, when set, sends the CDN of a task whose home is another
	// member to that member instead of the origin.
	Home Home
}

// Metrics are the task collectors (any may be nil: New fills it with an
// unread one).
type Metrics struct {
	Tasks            *prometheus.GaugeVec
	Registered       prometheus.Counter
	CDNTrigger       prometheus.Counter
	CDNTriggerFailed prometheus.Counter
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
	// trust is the key of how the source's TLS is checked (see taskid):
	// every fetch of the task, the first or a retry, is checked alike.
	trust      string
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
	// gone marks a task GC is dropping (Detach): no CDN fetch starts for
	// it any more, so the one GC stops is its last.
	gone bool
	// kept marks a task a preheat or a cluster fetch asked for: its fill
	// is for the cache, wanted with no client; registering counts the
	// registrations between ensure and their client entry. Both are read
	// by wanted without t.mu, which a stop of the fill may hold.
	kept        atomic.Bool
	registering atomic.Int32
}

// Manager is the task manager.
type Manager struct {
	cfg      Config
	cdn      CDN
	progress Progress
	peers    Peers
	dfget    DfgetTasks
	metrics  Metrics
	log      logrus.FieldLogger
	now      func() time.Time

	mu    sync.Mutex
	tasks map[string]*Task

	// waiting counts the Waits blocked for a status change, so a test can
	// change the status once a waiter is parked rather than after a sleep.
	waiting atomic.Int64
}

// New returns a task manager.
func New(cfg Config, c CDN, p Progress, peers Peers, d DfgetTasks, mx Metrics, log logrus.FieldLogger) *Manager {
	mx.Tasks = metrics.OrGaugeVec(mx.Tasks, "cdnstatus")
	mx.Registered = metrics.OrCounter(mx.Registered)
	mx.CDNTrigger = metrics.OrCounter(mx.CDNTrigger)
	mx.CDNTriggerFailed = metrics.OrCounter(mx.CDNTriggerFailed)
	mx.PiecesDownloaded = metrics.OrCounter(mx.PiecesDownloaded)
	return &Manager{cfg: cfg, cdn: c, progress: p, peers: peers, dfget: d, metrics: mx, log: log,
		now: time.Now, tasks: map[string]*Task{}}
}

// SuperCID is the supernode's CID for a task.
func (m *Manager) SuperCID(taskID string) string {
	return types.SuperNodeCIDPrefix + m.cfg.AdvertiseIP + "~" + taskID
}

// ensure creates or reuses the task of src and starts its CDN if it is not
// running or done; route lets the cluster choose where the CDN reads from
// (a cluster fetch from another member is never routed again). client is
// a registration's, which must end with t.registering.Add(-1) when ensure
// returned t; else a preheat's or a cluster fetch's, which keeps the task.
func (m *Manager) ensure(src cdn.Source, route, client bool) (*Task, error) {
	m.mu.Lock()
	t := m.tasks[src.TaskID]
	if t == nil {
		t = &Task{id: src.TaskID, rawURL: src.RawURL, taskURL: src.TaskURL, md5: src.Md5, identifier: src.Identifier,
			trust: trustOf(src).Key(), headers: src.Headers, httpLen: -1, status: types.CDNStatusWaiting, changed: make(chan struct{})}
		m.tasks[src.TaskID] = t
		m.gauge("", types.CDNStatusWaiting)
		m.progress.InitTask(src.TaskID)
	}
	m.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone {
		// GC is dropping the task (and perhaps its files): a fetch started
		// now would outlive it. Once GC is done, a registration makes the
		// task anew.
		return nil, errorf(types.CodeSystemError, "task %s is being deleted: register again", src.TaskID)
	}
	t.access = m.now()
	// The trust is in the ID; comparing it too means no choice of URL,
	// identifier or Range can make a task ID that lets a client join a
	// task fetched with another trust.
	if t.taskURL != src.TaskURL || t.md5 != src.Md5 || (src.Md5 == "" && t.identifier != src.Identifier) ||
		t.trust != trustOf(src).Key() {
		return nil, errorf(types.CodeSystemError, "task id %s conflicts with an existing task", src.TaskID)
	}
	if !t.failedAt.IsZero() && m.now().Sub(t.failedAt) < m.cfg.FailAccessInterval {
		return nil, errorf(types.CodeURLNotReachable, "url is not reachable (retry after %s): %w",
			t.failedAt.Add(m.cfg.FailAccessInterval).Format(time.RFC3339), t.failErr)
	}
	if client {
		t.registering.Add(1)
	} else {
		t.kept.Store(true)
	}
	if t.status != types.CDNStatusWaiting && t.status != types.CDNStatusFailed && t.status != types.CDNStatusSourceError {
		return t, nil
	}
	t.rawURL, t.headers = src.RawURL, src.Headers
	src.Wanted = func() bool { return m.wanted(t) }
	m.metrics.CDNTrigger.Inc()
	start := m.cdn.Start
	if m.cfg.SourcePattern {
		start = m.cdn.StartSource
	} else if route && m.cfg.Home != nil {
		home, id := m.cfg.Home, src.TaskID
		src.Via, src.HomeNow = home.Via(id), func() string { return home.Via(id) }
	}
	st, err := start(src, func(r cdn.Result) { m.cdnDone(t, r) })
	if err != nil {
		if client {
			t.registering.Add(-1)
		}
		m.metrics.CDNTriggerFailed.Inc()
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

// setStatus changes a task's CDN status; t.mu is held. A task GC dropped
// left the gauge already (Detach): its fetch's end must not count it again.
func (m *Manager) setStatus(t *Task, s string) {
	if t.status == s {
		return
	}
	if !t.gone {
		m.gauge(t.status, s)
	}
	t.status = s
	close(t.changed)
	t.changed = make(chan struct{})
}

func (m *Manager) gauge(from, to string) {
	if from != "" {
		m.metrics.Tasks.WithLabelValues(from).Dec()
	}
	if to != "" {
		m.metrics.Tasks.WithLabelValues(to).Inc()
	}
}

// wanted reports whether anyone is left to download t's file, asked when
// its fill, which waited for a slot, gets one: a fill nobody waits for
// then reads no source. A preheat or cluster fetch asked for the file, a
// registration is under way, or a client's peer is up (not gone down with
// /peer/service/down, nor collected with its clients by the peer GC).
func (m *Manager) wanted(t *Task) bool {
	if t.kept.Load() || t.registering.Load() > 0 {
		return true
	}
	for _, dt := range m.dfget.ByTask(t.id) {
		if m.progress.DownSince(dt.PeerID).IsZero() {
			return true
		}
	}
	return false
}

func (m *Manager) cdnDone(t *Task, r cdn.Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !r.OK {
		m.metrics.CDNTriggerFailed.Inc()
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

// Info returns the API view of a task.
func (m *Manager) Info(id string) (types.TaskInfo, error) {
	t, err := m.task(id)
	if err != nil {
		return types.TaskInfo{}, err
	}
	info := t.info()
	if info.CdnStatus == types.CDNStatusRunning {
		// Asked outside t.mu: the CDN's locks are never taken under it.
		info.FillWaiting = m.cdn.Waiting(id)
	}
	return info, nil
}

func (t *Task) info() types.TaskInfo {
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
	}
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
		m.waiting.Add(1)
		select {
		case <-ch:
		case <-ctx.Done():
			m.waiting.Add(-1)
			return s, ctx.Err()
		}
		m.waiting.Add(-1)
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

// IfAbsent runs fn if task id is not in memory, under the lock a
// registration inserts a task under, and reports whether it ran: no task
// of id is created while fn runs. Disk GC removes a cache file in fn, so a
// registration never opens or reuses a file that is being removed.
func (m *Manager) IfAbsent(id string, fn func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tasks[id]; ok {
		return false
	}
	fn()
	return true
}

// Detach marks task id gone, the first step of dropping it: it waits for
// a CDN start in flight (ensure holds t.mu across it), and from then on no
// registration starts a fetch for the task, so the fetch GC stops next
// (cdn.Delete) is its last and no fetch outlives the task. The task stays
// listed until Remove: a registration meanwhile is told to register again
// rather than making a new task whose progress and files GC is deleting.
// It reports whether the task was there and not gone already.
func (m *Manager) Detach(id string) bool {
	m.mu.Lock()
	t := m.tasks[id]
	m.mu.Unlock()
	return t != nil && m.detach(t)
}

// detach marks t gone and takes it off the gauge; it reports whether t
// was not gone already.
func (m *Manager) detach(t *Task) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone {
		return false
	}
	t.gone = true
	m.gauge(t.status, "")
	return true
}

// Remove forgets a task (detaching it first if Detach was not called).
func (m *Manager) Remove(id string) {
	m.mu.Lock()
	t := m.tasks[id]
	delete(m.tasks, id)
	m.mu.Unlock()
	if t != nil {
		m.detach(t)
	}
}

// Snapshot is a task's state at one moment, as the /peer/task call reads it.
type Snapshot struct {
	ID     string
	Status string // the CDN status
	// Changed is closed when Status changes.
	Changed    <-chan struct{}
	PieceSize  int32
	HTTPLength int64 // -1 while unknown
	RawURL     string
	RealMd5    string // once the CDN succeeded
	FileLength int64  // the CDN file's length, once it succeeded
}

// Snapshot returns the state of task id.
func (m *Manager) Snapshot(id string) (Snapshot, error) { return m.snapshot(id, false) }

// Access marks task id as used now (a client asked for it, so task GC
// keeps it) and returns its state.
func (m *Manager) Access(id string) (Snapshot, error) { return m.snapshot(id, true) }

func (m *Manager) snapshot(id string, access bool) (Snapshot, error) {
	t, err := m.task(id)
	if err != nil {
		return Snapshot{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if access {
		t.access = m.now()
	}
	return t.snapshot(), nil
}

// snapshot is t's state; t.mu is held.
func (t *Task) snapshot() Snapshot {
	return Snapshot{ID: t.id, Status: t.status, Changed: t.changed, PieceSize: t.pieceSize, HTTPLength: t.httpLen,
		RawURL: t.rawURL, RealMd5: t.realMd5, FileLength: t.fileLength}
}
