package peer

//go:generate go tool mockgen -source=probe.go -destination=mock_probe_test.go -package=peer

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// probeTimeout bounds the connection attempt of a peer probe.
const probeTimeout = 3 * time.Second

// Downer is told that a peer's server is gone.
type Downer interface {
	PeerDown(peerID string)
}

// Prober checks, in the background and once at a time per peer, whether
// the server of a peer a client just failed to fetch from still accepts
// connections. A refused or unreachable one (its process died, its host
// left the network) is marked down at once, so no other client is sent to
// it; otherwise it would take eliminationLimit failed pieces. A server that
// accepts, or a dial that merely times out (an overloaded host), proves
// nothing and is left to the failure counts.
type Prober struct {
	dir  *Manager
	down Downer
	log  logrus.FieldLogger
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	probing map[string]bool
	probes  sync.WaitGroup
}

// NewProber returns a prober that looks peers up in dir and reports the
// gone ones to down.
func NewProber(dir *Manager, down Downer, log logrus.FieldLogger) *Prober {
	return &Prober{dir: dir, down: down, log: log, dial: (&net.Dialer{}).DialContext, probing: map[string]bool{}}
}

// Probe starts a probe of peerID's server unless one is running.
func (p *Prober) Probe(peerID string) {
	info, err := p.dir.Get(peerID)
	if err != nil || info.Port <= 0 || info.IP == "" {
		return
	}
	p.mu.Lock()
	if p.probing[peerID] {
		p.mu.Unlock()
		return
	}
	p.probing[peerID] = true
	p.mu.Unlock()
	p.probes.Add(1)
	go func() {
		defer p.probes.Done()
		defer func() {
			p.mu.Lock()
			delete(p.probing, peerID)
			p.mu.Unlock()
		}()
		p.check(peerID, net.JoinHostPort(info.IP, strconv.Itoa(info.Port)))
	}()
}

func (p *Prober) check(peerID, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	conn, err := p.dial(ctx, "tcp", addr)
	if err == nil {
		conn.Close()
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.ENETUNREACH) {
		return
	}
	p.down.PeerDown(peerID)
	p.log.WithField("peer", peerID).Warnf("peer server %s is gone (%v): no longer scheduled until it registers again", addr, err)
}

// Wait waits for the probes in flight (tests, shutdown).
func (p *Prober) Wait() { p.probes.Wait() }
