// Package gc collects what the supernode no longer needs: tasks idle for
// --task-expire-time, peers offline for --peer-gc-delay, and, when the disk
// runs low, cached files of tasks not in memory, least recently used first.
package gc

//go:generate go tool mockgen -source=gc.go -destination=mock_deps_test.go -package=gc

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// Tasks is the task manager as GC uses it.
type Tasks interface {
	Expired(before time.Time) []string
	Has(id string) bool
	// IfAbsent runs fn if task id is not in memory, with registrations
	// held off while it runs, and reports whether it ran.
	IfAbsent(id string, fn func()) bool
	// Detach marks a task as being dropped: it returns once no CDN start
	// for it is in flight, and none starts after; it reports whether the
	// task was there (and not being dropped already).
	Detach(id string) bool
	Remove(id string)
}

// DfgetTasks is the dfget task registry as GC uses it.
type DfgetTasks interface {
	ByTask(taskID string) []dfgettask.Task
	ByPeer(peerID string) []dfgettask.Task
	Delete(cid, taskID string)
}

// Progress is the progress manager as GC uses it.
type Progress interface {
	PeerDown(peerID string)
	DeleteClient(taskID, cid string)
	DeleteTask(taskID string)
	DeletePeer(peerID string)
	DownSince(peerID string) time.Time
	HasPeer(peerID string) bool
	// PeerIDs lists the peers that have progress state.
	PeerIDs() []string
	SuperPID() string
}

// Peers is the peer registry as GC uses it.
type Peers interface {
	IDs() []string
	Delete(id string) error
}

// CDN drops a task's CDN state (and files when full).
type CDN interface {
	Delete(taskID string, full bool) error
}

// Store is the cache store as disk GC uses it.
type Store interface {
	TaskIDs() ([]string, error)
	ReadMeta(taskID string) (*store.Meta, error)
	AvailSpace() (int64, error)
	// DiskSize is the size of the cache's file system.
	DiskSize() (int64, error)
	Remove(taskID string) error
}

// Config of the GC loops.
type Config struct {
	InitialDelay     time.Duration
	MetaInterval     time.Duration
	DiskInterval     time.Duration
	TaskExpire       time.Duration
	PeerGCDelay      time.Duration
	YoungGCThreshold int64 // disk GC starts below this much free space
	FullGCThreshold  int64 // below this, recently used files may go too
	// YoungMinIdle keeps files accessed this recently out of a young GC, so
	// a disk that is merely below the young threshold (or a restart, before
	// clients register again) does not wipe a cache in use.
	YoungMinIdle time.Duration
}

// Metrics are the GC collectors (any may be nil: New fills it with an
// unread one).
type Metrics struct {
	Tasks, Peers, Disks prometheus.Counter
	LastDisk            prometheus.Gauge
}

// Manager runs the GC loops.
type Manager struct {
	cfg      Config
	tasks    Tasks
	dfget    DfgetTasks
	progress Progress
	peers    Peers
	cdn      CDN
	store    Store
	metrics  Metrics
	log      logrus.FieldLogger
	now      func() time.Time
	mu       sync.Mutex // one collection at a time
}

// New returns a GC manager.
func New(cfg Config, t Tasks, d DfgetTasks, p Progress, peers Peers, c CDN, s Store, mx Metrics, log logrus.FieldLogger) *Manager {
	mx.Tasks = metrics.OrCounter(mx.Tasks)
	mx.Peers = metrics.OrCounter(mx.Peers)
	mx.Disks = metrics.OrCounter(mx.Disks)
	mx.LastDisk = metrics.OrGauge(mx.LastDisk)
	return &Manager{cfg: cfg, tasks: t, dfget: d, progress: p, peers: peers, cdn: c, store: s, metrics: mx, log: log, now: time.Now}
}

// Run runs the loops until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	select {
	case <-time.After(m.cfg.InitialDelay):
	case <-ctx.Done():
		return
	}
	meta := time.NewTicker(m.cfg.MetaInterval)
	defer meta.Stop()
	disk := time.NewTicker(m.cfg.DiskInterval)
	defer disk.Stop()
	m.GCMeta()
	m.GCDisk()
	for {
		select {
		case <-ctx.Done():
			return
		case <-meta.C:
			m.GCMeta()
		case <-disk.C:
			m.GCDisk()
		}
	}
}

// GCMeta collects expired tasks, then offline peers.
func (m *Manager) GCMeta() {
	for _, id := range m.tasks.Expired(m.now().Add(-m.cfg.TaskExpire)) {
		m.log.Infof("gc: task %s expired", id)
		m.GCTask(id, false)
	}
	m.gcPeers()
}

// GCTask drops a task from memory: its clients (their peers go down), its
// CDN state and progress; full also deletes its cache files. The task is
// detached first: that waits for a CDN start in flight and keeps any
// registration from starting another, so the fetch cdn.Delete stops is the
// task's last and none runs on for a task no longer listed, one task GC
// never sees again and disk GC may delete under it. The CDN goes before
// the progress: Delete returns once a running fetch has stopped, so its
// last piece and finish events reach the progress store before the task
// is deleted there, not after.
func (m *Manager) GCTask(taskID string, full bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tasks.Detach(taskID) {
		m.metrics.Tasks.Inc()
	}
	for _, dt := range m.dfget.ByTask(taskID) {
		m.progress.PeerDown(dt.PeerID)
		m.progress.DeleteClient(taskID, dt.CID)
		m.dfget.Delete(dt.CID, taskID)
	}
	if err := m.cdn.Delete(taskID, full); err != nil {
		m.log.WithError(err).Warnf("gc: delete cdn of %s", taskID)
	}
	m.progress.DeleteTask(taskID)
	m.tasks.Remove(taskID)
}

func (m *Manager) gcPeers() {
	m.mu.Lock()
	defer m.mu.Unlock()
	super := m.progress.SuperPID()
	// The states are listed before the records: a registration makes a
	// peer's record before its state, so a state listed here whose record
	// is not listed after belongs to a peer deleted, not one registering.
	tracked := m.progress.PeerIDs()
	records := m.peers.IDs()
	for _, id := range records {
		if id == super {
			continue
		}
		down := m.progress.DownSince(id)
		if m.progress.HasPeer(id) && (down.IsZero() || m.now().Sub(down) < m.cfg.PeerGCDelay) {
			continue
		}
		if err := m.dropPeer(id); err == nil {
			m.metrics.Peers.Inc()
		}
		m.log.Infof("gc: peer %s", id)
	}
	m.sweepPeers(super, tracked, records)
}

// sweepPeers drops the progress state of peers without a record, which
// the loop over the records never visits: state made for a peer after it
// was deleted (a report or probe that overlapped the deletion) would
// otherwise be kept forever.
func (m *Manager) sweepPeers(super string, tracked, records []string) {
	known := make(map[string]bool, len(records))
	for _, id := range records {
		known[id] = true
	}
	for _, id := range tracked {
		if id != super && !known[id] {
			m.progress.DeletePeer(id)
			m.log.Infof("gc: progress of peer %s, which has no record", id)
		}
	}
}

// DeletePeer drops a peer at once (DELETE /api/v1/peers/{id}) as the peer
// GC drops one offline for --peer-gc-delay: its clients and its progress
// go with its record. A record deleted alone left the peer a holder, with
// no address to give: the piece was never offered from anywhere else. An
// unknown ID is an error, and the supernode's own peer is refused: its
// pieces are served from the cache, not through a record.
func (m *Manager) DeletePeer(id string) error {
	if id == m.progress.SuperPID() {
		return fmt.Errorf("delete peer %s: the supernode's own peer", id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.dropPeer(id); err != nil {
		return fmt.Errorf("delete peer %s: %w", id, err)
	}
	m.log.Infof("peer %s deleted", id)
	return nil
}

// dropPeer forgets peer id: its clients of every task, its progress (it
// stops being a holder anywhere) and its record, whose Delete error (an
// unknown ID) it returns. m.mu is held.
func (m *Manager) dropPeer(id string) error {
	for _, dt := range m.dfget.ByPeer(id) {
		m.progress.DeleteClient(dt.TaskID, dt.CID)
		m.dfget.Delete(dt.CID, dt.TaskID)
	}
	m.progress.DeletePeer(id)
	return m.peers.Delete(id)
}

// GCDisk frees cache space when free space is below the young threshold:
// cache files of tasks not in memory go, least recently accessed first,
// until free space is back above it. Files idle for less than YoungMinIdle
// are kept unless free space is below the full threshold. Both thresholds
// are capped to a share of the file system (Thresholds). Free space is
// read again after each removal rather than summed from the files' sizes:
// other supernodes may share the disk, and a file a transfer holds open
// frees nothing until it is closed.
func (m *Manager) GCDisk() {
	young, full, err := m.Thresholds()
	if err != nil {
		m.log.WithError(err).Warn("gc: disk size")
		return
	}
	avail, err := m.store.AvailSpace()
	if err != nil {
		m.log.WithError(err).Warn("gc: disk space")
		return
	}
	// A pass that finds enough space counts too (v1 counted only a pass
	// with files to remove): with capped thresholds most passes are that,
	// and the gauge shows the GC loop is alive.
	defer m.metrics.LastDisk.Set(float64(m.now().Unix()))
	if avail >= young {
		return
	}
	cands, err := m.diskCandidates()
	if err != nil {
		m.log.WithError(err).Warn("gc: list cache")
		return
	}
	recent := m.now().Add(-m.cfg.YoungMinIdle).UnixMilli()
	for _, c := range cands {
		if avail >= young || (avail > full && c.access > recent) {
			break // sorted: every later file is more recent
		}
		if !m.removeCache(c.id) {
			continue
		}
		if avail, err = m.store.AvailSpace(); err != nil {
			m.log.WithError(err).Warn("gc: disk space")
			break
		}
	}
}

// diskCandidate is a cache file disk GC may remove.
type diskCandidate struct {
	id     string
	access int64 // Unix ms
}

// diskCandidates are the cache files of tasks not in memory, least
// recently accessed first.
func (m *Manager) diskCandidates() ([]diskCandidate, error) {
	ids, err := m.store.TaskIDs()
	if err != nil {
		return nil, err
	}
	var cands []diskCandidate
	for _, id := range ids {
		if m.tasks.Has(id) {
			continue
		}
		var access int64
		if meta, err := m.store.ReadMeta(id); err == nil {
			access = meta.AccessTime
		}
		cands = append(cands, diskCandidate{id, access})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].access < cands[j].access })
	return cands, nil
}

// removeCache removes a task's cache files unless the task is in memory,
// checked under the task manager's lock: a registration meanwhile would
// open or reuse the files being removed. It reports whether they went.
func (m *Manager) removeCache(id string) bool {
	var err error
	if !m.tasks.IfAbsent(id, func() { err = m.store.Remove(id) }) {
		return false // registered meanwhile
	}
	if err != nil {
		m.log.WithError(err).Warnf("gc: remove cache of %s", id)
		return false
	}
	m.metrics.Disks.Inc()
	m.log.Infof("gc: removed cache of %s", id)
	return true
}

// Thresholds are the young and full GC thresholds in force: the
// configured ones, capped to YoungShare and FullShare of the file
// system's size, so a small disk (a home on a 4 GB tmpfs) is not below
// them for good, with every idle cache file removed each round.
func (m *Manager) Thresholds() (young, full int64, err error) {
	size, err := m.store.DiskSize()
	if err != nil {
		return 0, 0, err
	}
	return min(m.cfg.YoungGCThreshold, size/100*YoungSharePercent),
		min(m.cfg.FullGCThreshold, size/100*FullSharePercent), nil
}

// The caps of the GC thresholds, in percent of the file system's size.
const (
	YoungSharePercent = 20
	FullSharePercent  = 5
)

// WarnCapped logs the thresholds that the file system's size caps.
func (m *Manager) WarnCapped() {
	young, full, err := m.Thresholds()
	if err != nil {
		m.log.WithError(err).Warn("gc: disk size")
		return
	}
	if young < m.cfg.YoungGCThreshold || full < m.cfg.FullGCThreshold {
		m.log.Warnf("gc: the cache's file system is small: disk GC thresholds capped to %d%% and %d%% of its size: young %d bytes (configured %d), full %d bytes (configured %d)",
			YoungSharePercent, FullSharePercent, young, m.cfg.YoungGCThreshold, full, m.cfg.FullGCThreshold)
	}
}
