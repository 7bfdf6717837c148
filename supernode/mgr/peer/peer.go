// Package peer keeps the peers (dfget hosts) known to the supernode. Each
// registration creates a new peer, as in Dragonfly 1.x.
package peer

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/supernode/metrics"
)

// ErrNotFound reports an unknown peer ID.
var ErrNotFound = errors.New("peer not found")

// Manager stores peers in memory.
type Manager struct {
	mu    sync.RWMutex
	peers map[string]types.PeerInfo
	gauge *prometheus.GaugeVec
	label *metrics.Label
	now   func() time.Time
}

// New returns an empty manager; gauge (may be nil) is
// dragonfly_supernode_peers, its peer values bounded by labels (may be nil).
func New(gauge *prometheus.GaugeVec, labels *metrics.Labels) *Manager {
	return &Manager{peers: map[string]types.PeerInfo{}, gauge: metrics.OrGaugeVec(gauge, "peer"),
		label: metrics.OrLabels(labels).Peer, now: time.Now}
}

// Register validates and stores a peer and returns its new ID.
func (m *Manager) Register(req types.PeerCreateRequest) (string, error) {
	ip := net.ParseIP(req.IP)
	if ip == nil || ip.To4() == nil {
		return "", fmt.Errorf("invalid peer ip %q: want IPv4", req.IP)
	}
	if req.Port < 0 || req.Port > 65535 {
		return "", fmt.Errorf("invalid peer port %d", req.Port)
	}
	now := m.now()
	id := req.HostName + "-" + req.IP + "-" + strconv.FormatInt(now.UnixNano(), 10)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, taken := m.peers[id]; taken; _, taken = m.peers[id] {
		now = now.Add(time.Nanosecond)
		id = req.HostName + "-" + req.IP + "-" + strconv.FormatInt(now.UnixNano(), 10)
	}
	m.peers[id] = types.PeerInfo{ID: id, IP: req.IP, HostName: req.HostName, Port: req.Port, Version: req.Version, Created: now}
	m.gauge.WithLabelValues(m.label.Value(req.IP)).Inc()
	return id, nil
}

// Get returns a peer.
func (m *Manager) Get(id string) (types.PeerInfo, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.peers[id]
	if !ok {
		return types.PeerInfo{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return p, nil
}

// Delete removes a peer.
func (m *Manager) Delete(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	delete(m.peers, id)
	m.gauge.WithLabelValues(m.label.Value(p.IP)).Dec()
	return nil
}

// List returns the peers sorted by creation time (desc reverses), paged
// with pageNum/pageSize (pageSize 0 = all).
func (m *Manager) List(pageNum, pageSize int, desc bool) []types.PeerInfo {
	m.mu.RLock()
	out := make([]types.PeerInfo, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p)
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if desc {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].Created.Before(out[j].Created)
	})
	if pageSize <= 0 {
		return out
	}
	// pageNum*pageSize is only computed once it is known to be at most
	// len(out): client-chosen numbers must not overflow into a bad slice.
	if pageNum < 0 || pageNum > len(out)/pageSize {
		return []types.PeerInfo{}
	}
	start := pageNum * pageSize
	if start >= len(out) {
		return []types.PeerInfo{}
	}
	return out[start : start+min(pageSize, len(out)-start)]
}

// IDs lists every peer ID.
func (m *Manager) IDs() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Collect(maps.Keys(m.peers))
}
