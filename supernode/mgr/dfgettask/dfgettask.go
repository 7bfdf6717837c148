// Package dfgettask keeps the supernode's record of each (client, task)
// download: the dfget process's CID, its peer, the path its peer server
// serves the file under, and the download's status.
package dfgettask

import (
	"errors"
	"fmt"
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
	super string
}

// New returns an empty manager; tasks of superPID are kept out of metrics.
func New(m Metrics, superPID string) *Manager {
	m.Gauge = metrics.OrGaugeVec(m.Gauge, "callsystem", "status")
	m.Registered = metrics.OrCounterVec(m.Registered, "callsystem")
	m.Failed = metrics.OrCounterVec(m.Failed, "callsystem")
	m.Labels = metrics.OrLabels(m.Labels)
	return &Manager{tasks: map[string]*Task{}, ptoc: map[string]string{}, m: m, super: superPID}
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
	if t.PeerID != m.super {
		m.m.Registered.WithLabelValues(m.m.Labels.CallSystem.Value(t.CallSystem)).Inc()
	}
	return nil
}

func (m *Manager) gauge(t *Task, d float64) {
	if t.PeerID != m.super {
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
	if status == StatusFailed && t.PeerID != m.super {
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
