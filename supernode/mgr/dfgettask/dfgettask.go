// Package dfgettask keeps the supernode's record of each (client, task)
// download: the dfget process's CID, its peer, the path its peer server
// serves the file under, the download's status, and the address the
// client registered from, which its later calls must come from.
package dfgettask

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/supernode/metrics"
)

// Statuses of a dfget task.
const (
	StatusWaiting = "WAITING"
	StatusRunning = "RUNNING"
	StatusSuccess = "SUCCESS"
	StatusFailed  = "FAILED"
)

// ErrNotFound reports an unknown (cid, task) pair.
var ErrNotFound = errors.New("dfget task not found")

// Task is one client's download of one task.
type Task struct {
	CID         string
	TaskID      string
	PeerID      string
	Path        string
	CallSystem  string
	Status      string
	SupernodeIP string
	PieceSize   int32
	Dfdaemon    bool
	Stream      bool
	// Blake3 is a client that asked for BLAKE3 piece digests at
	// registration: its 601 pieces carry pieceDigest. A Dragonfly 1.x
	// dfget never asks and never sees the field.
	Blake3 bool
	// Addr is the address the client registered from (ParseAddr): the
	// only one its calls as this client are taken from (Caller).
	Addr netip.Addr
}

// Config of the manager.
type Config struct {
	// SuperPID is the supernode's own peer: its tasks are kept out of
	// metrics.
	SuperPID string
	// AnyAddress takes a client's calls from any address, as Dragonfly
	// 1.x did, for deployments where one client's source address changes
	// between requests (NAT pools). The zero value binds.
	AnyAddress bool
}

// Metrics are the dfget task collectors (any may be nil: New fills it with
// an unread one), and the labels that bound their callsystem values (taken
// from registrations).
type Metrics struct {
	Gauge      *prometheus.GaugeVec
	Registered *prometheus.CounterVec
	Failed     *prometheus.CounterVec
	Labels     *metrics.Labels
}

// Manager stores dfget tasks keyed by CID@taskID with a peerID@taskID index.
type Manager struct {
	mu    sync.RWMutex
	tasks map[string]*Task
	ptoc  map[string]string
	m     Metrics
	cfg   Config
}

// New returns an empty manager.
func New(cfg Config, m Metrics) *Manager {
	m.Gauge = metrics.OrGaugeVec(m.Gauge, "callsystem", "status")
	m.Registered = metrics.OrCounterVec(m.Registered, "callsystem")
	m.Failed = metrics.OrCounterVec(m.Failed, "callsystem")
	m.Labels = metrics.OrLabels(m.Labels)
	return &Manager{tasks: map[string]*Task{}, ptoc: map[string]string{}, m: m, cfg: cfg}
}

func key(a, b string) string { return a + "@" + b }

// Add stores t, replacing an older record of the same CID and task.
func (m *Manager) Add(t Task) error {
	if t.CID == "" || t.TaskID == "" || t.PeerID == "" || t.Path == "" {
		return fmt.Errorf("dfget task needs cid, task id, peer id and path")
	}
	if t.Status == "" {
		t.Status = StatusWaiting
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.tasks[key(t.CID, t.TaskID)]; old != nil {
		m.gauge(old, -1)
		delete(m.ptoc, key(old.PeerID, old.TaskID))
	}
	m.tasks[key(t.CID, t.TaskID)] = &t
	m.ptoc[key(t.PeerID, t.TaskID)] = t.CID
	m.gauge(&t, 1)
	if t.PeerID != m.cfg.SuperPID {
		m.m.Registered.WithLabelValues(m.m.Labels.CallSystem.Value(t.CallSystem)).Inc()
	}
	return nil
}

func (m *Manager) gauge(t *Task, d float64) {
	if t.PeerID != m.cfg.SuperPID {
		m.m.Gauge.WithLabelValues(m.m.Labels.CallSystem.Value(t.CallSystem), t.Status).Add(d)
	}
}

// Get returns a copy of the dfget task of cid for taskID.
func (m *Manager) Get(cid, taskID string) (Task, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.tasks[key(cid, taskID)]
	if t == nil {
		return Task{}, fmt.Errorf("%w: %s", ErrNotFound, key(cid, taskID))
	}
	return *t, nil
}

// ParseAddr is the address records are bound by, from a connection's
// remote address with or without its port: an IPv4-mapped IPv6 address
// is its IPv4 address, so one client is one address whichever socket
// family the supernode accepted it on. Anything else is the zero Addr.
func ParseAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(remote)
	return a.Unmap()
}

// ForeignError is a call as a registered client from another address
// than the one it registered from.
type ForeignError struct {
	CID, TaskID string
	// Bound is the client's registered address; From the call's.
	Bound, From netip.Addr
}

func (e *ForeignError) Error() string {
	return fmt.Sprintf("client %s of task %s is registered from another address", e.CID, e.TaskID)
}

// notFoundError is Caller's error. Its text is the same whether the
// client is unknown or registered from another address (a *ForeignError
// it wraps), so a caller cannot tell which: the API still finds the
// ForeignError, to log and count it.
type notFoundError struct {
	cid, taskID string
	cause       error
}

func (e *notFoundError) Error() string {
	return fmt.Sprintf("client %s of task %s not found", e.cid, e.taskID)
}

func (e *notFoundError) Unwrap() error { return e.cause }

// Caller returns the dfget task of cid for taskID to a call that acts as
// that client, made from addr (ParseAddr). A CID is no secret (every 601
// names its holders' CIDs), so a call from another address than the
// registration's is refused, as for an unknown client, unless the
// manager takes any address.
func (m *Manager) Caller(cid, taskID string, from netip.Addr) (Task, error) {
	t, err := m.Get(cid, taskID)
	if err == nil && !m.cfg.AnyAddress && t.Addr != from {
		t, err = Task{}, &ForeignError{CID: cid, TaskID: taskID, Bound: t.Addr, From: from}
	}
	if err != nil {
		return Task{}, &notFoundError{cid: cid, taskID: taskID, cause: err}
	}
	return t, nil
}

// GetByPeer returns the dfget task of peer peerID for taskID.
func (m *Manager) GetByPeer(peerID, taskID string) (Task, error) {
	m.mu.RLock()
	cid, ok := m.ptoc[key(peerID, taskID)]
	m.mu.RUnlock()
	if !ok {
		return Task{}, fmt.Errorf("%w: peer %s", ErrNotFound, key(peerID, taskID))
	}
	return m.Get(cid, taskID)
}

// SetStatus changes the status; SUCCESS is final.
func (m *Manager) SetStatus(cid, taskID, status string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[key(cid, taskID)]
	if t == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, key(cid, taskID))
	}
	if t.Status == StatusSuccess || t.Status == status {
		return nil
	}
	m.gauge(t, -1)
	t.Status = status
	m.gauge(t, 1)
	if status == StatusFailed && t.PeerID != m.cfg.SuperPID {
		m.m.Failed.WithLabelValues(m.m.Labels.CallSystem.Value(t.CallSystem)).Inc()
	}
	return nil
}

// Delete removes a dfget task.
func (m *Manager) Delete(cid, taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[key(cid, taskID)]
	if t == nil {
		return
	}
	m.gauge(t, -1)
	delete(m.tasks, key(cid, taskID))
	delete(m.ptoc, key(t.PeerID, t.TaskID))
}

// ByTask lists the dfget tasks of a task.
func (m *Manager) ByTask(taskID string) []Task {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Task
	for _, t := range m.tasks {
		if t.TaskID == taskID {
			out = append(out, *t)
		}
	}
	return out
}

// ByPeer lists the dfget tasks of a peer.
func (m *Manager) ByPeer(peerID string) []Task {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Task
	for _, t := range m.tasks {
		if t.PeerID == peerID {
			out = append(out, *t)
		}
	}
	return out
}
