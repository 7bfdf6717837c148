// Package cluster is a supernode's view of its cluster: the members its
// --cluster list names (host names resolved to all their addresses, again
// at every round, so DNS membership is followed), which of them answer a
// probe, and the home of a task: the first live member in the rendezvous
// order of the task's ID, the supernode the dfgets of the task meet on.
// Nothing is shared between members: each one computes the same homes from
// the same list.
package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/ring"
	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
)

// Config of a cluster view.
type Config struct {
	// Nodes is the --cluster list, as written.
	Nodes nodes.List
	// Self is this supernode's member ID: its advertised IP and API port.
	Self string
	// Interval is the time between rounds of resolution and probes: a
	// member that refuses connections is skipped from the next round on,
	// one that hangs after two (a CDN fetch from it gives up after a
	// second's dial in between).
	Interval time.Duration
	// Timeout bounds one probe.
	Timeout time.Duration
	// TLS, when set, probes members over HTTPS with it (their API ports
	// serve TLS when this one's does).
	TLS *tls.Config
}

// Cluster tracks the members. Start runs its rounds until the context ends.
type Cluster struct {
	cfg      Config
	resolver nodes.Resolver
	http     *http.Client
	up       *prometheus.GaugeVec
	log      logrus.FieldLogger

	mu      sync.Mutex
	members []member // sorted by ID
	wg      sync.WaitGroup
}

type member struct {
	types.ClusterMember
	ring ring.Member
	// slow is a probe that timed out, misses the probes in a row that
	// failed: a busy member is given a second chance, one that refuses
	// the connection none.
	slow   bool
	misses int
	// listed is the list entry the member comes from ("host:port");
	// unresolved marks the entry of a name that never resolved.
	listed     string
	unresolved bool
}

// slowMisses is how many timed-out probes in a row make a member dead.
const slowMisses = 2

// New returns a cluster view; up (may be nil) is the liveness gauge by
// member ID.
func New(cfg Config, r nodes.Resolver, up *prometheus.GaugeVec, log logrus.FieldLogger) *Cluster {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 800 * time.Millisecond
	}
	return &Cluster{cfg: cfg, resolver: r, up: metrics.OrGaugeVec(up, "member"), log: log,
		http: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg.TLS}}}
}

// Start runs a first round before it returns, so the first registration
// already knows which members answer, then keeps going in the background
// until ctx ends; Wait waits for that.
func (c *Cluster) Start(ctx context.Context) {
	c.round(ctx)
	if !slices.ContainsFunc(c.Info().Members, func(m types.ClusterMember) bool { return m.Self }) {
		c.log.Warnf("this supernode (%s) is not in its cluster list %s: every task's home is another member", c.cfg.Self, c.cfg.Nodes.String())
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.round(ctx)
			}
		}
	}()
}

// Wait returns once the rounds stopped.
func (c *Cluster) Wait() { c.wg.Wait() }

// round resolves the list and probes every member but this one at once.
func (c *Cluster) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Interval)
	defer cancel()
	var next []member
	for _, n := range c.cfg.Nodes {
		// One by one, to show each member under the name it was listed as.
		next = append(next, c.resolve(rctx, n)...)
	}
	// Stable, so of an address listed twice the first listing counts.
	slices.SortStableFunc(next, func(a, b member) int { return cmpString(a.ID, b.ID) })
	next = slices.CompactFunc(next, func(a, b member) bool { return a.ID == b.ID })
	var wg sync.WaitGroup
	for i := range next {
		if next[i].Self {
			next[i].LastSeen = time.Now()
			continue
		}
		if next[i].unresolved {
			continue
		}
		wg.Add(1)
		go func(m *member) {
			defer wg.Done()
			m.Alive, m.LastErr = true, ""
			if err := c.probe(ctx, m.ID); err != nil {
				var ne net.Error
				m.Alive, m.LastErr, m.slow = false, err.Error(), errors.As(err, &ne) && ne.Timeout()
			}
		}(&next[i])
	}
	wg.Wait()
	c.install(next)
}

// resolve is the members listed as n this round, one per address of its
// name. A name whose lookup fails keeps the addresses it had at the last
// round: a DNS hiccup, or a lookup slower than the round, must not move
// the homes every member and dfget agree on. A name that never resolved is
// listed under its name but never alive: probed, the name would reach
// whichever address the probe's own lookup gives, home to every task.
func (c *Cluster) resolve(ctx context.Context, n nodes.Node) []member {
	list, errs := nodes.List{n}.Resolve(ctx, c.resolver)
	if len(errs) > 0 {
		for _, err := range errs {
			c.log.WithError(err).Warn("cluster member")
		}
		if last := c.lastResolved(n); len(last) > 0 {
			return last
		}
		m := c.newMember(n, n.Addr())
		m.LastErr, m.unresolved = errors.Join(errs...).Error(), true
		return []member{m}
	}
	out := make([]member, 0, len(list))
	for _, a := range list {
		out = append(out, c.newMember(n, a.Addr()))
	}
	return out
}

// lastResolved is the members the last round had for n, as new members.
func (c *Cluster) lastResolved(n nodes.Node) []member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []member
	for _, m := range c.members {
		if m.listed == n.Addr() && !m.unresolved {
			out = append(out, c.newMember(n, m.ID))
		}
	}
	return out
}

// newMember is the member id ("ip:port"), listed as n, with its weight.
func (c *Cluster) newMember(n nodes.Node, id string) member {
	return member{ClusterMember: types.ClusterMember{ID: id, Host: n.Host, Weight: n.Weight, Self: id == c.cfg.Self,
		Alive: id == c.cfg.Self}, ring: ring.Member{ID: id, Weight: n.Weight}, listed: n.Addr()}
}

// install makes next the members, keeping the last-seen times of those
// that stayed, and updates the gauge.
func (c *Cluster) install(next []member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for i := range next {
		m := &next[i]
		j, ok := slices.BinarySearchFunc(c.members, m.ID, func(o member, id string) int { return cmpString(o.ID, id) })
		switch {
		case m.Alive:
			m.LastSeen = now
		case ok:
			m.LastSeen, m.misses = c.members[j].LastSeen, c.members[j].misses+1
			m.Alive = m.slow && c.members[j].Alive && m.misses < slowMisses
		}
		if m.Alive != c.wasAlive(m.ID) {
			c.log.WithField("member", m.ID).Infof("cluster member alive=%v %s", m.Alive, m.LastErr)
		}
		c.up.WithLabelValues(m.ID).Set(b2f(m.Alive))
	}
	for _, o := range c.members {
		if _, ok := slices.BinarySearchFunc(next, o.ID, func(m member, id string) int { return cmpString(m.ID, id) }); !ok {
			c.up.DeleteLabelValues(o.ID)
		}
	}
	c.members = next
}

// wasAlive is a member's liveness before this round; a new member counts
// as alive so its first answer is not logged. c.mu is held.
func (c *Cluster) wasAlive(id string) bool {
	j, ok := slices.BinarySearchFunc(c.members, id, func(o member, id string) int { return cmpString(o.ID, id) })
	return !ok || c.members[j].Alive
}

// probe asks a member's /_ping.
func (c *Cluster) probe(ctx context.Context, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tlsconf.BaseURL(c.cfg.TLS, id)+"/_ping", nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", id, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d", id, resp.StatusCode)
	}
	return nil
}

// Home is the member ID of a task's home: the first member in the
// rendezvous order of its ID that answered the last probe (this supernode
// always counts as alive). It is "" when no member is alive.
func (c *Cluster) Home(taskID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	rm := make([]ring.Member, len(c.members))
	for i, m := range c.members {
		rm[i] = m.ring
	}
	for _, i := range ring.Order(taskID, rm) {
		if c.members[i].Alive {
			return c.members[i].ID
		}
	}
	return ""
}

// Via is the member a task's CDN reads from: its home when that is another
// live member, else "" (this supernode is the home, or no other member
// answers: the origin).
func (c *Cluster) Via(taskID string) string {
	if h := c.Home(taskID); h != c.cfg.Self {
		return h
	}
	return ""
}

// Info is the members as this supernode sees them, for the API.
func (c *Cluster) Info() types.ClusterInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := types.ClusterInfo{Self: c.cfg.Self, Members: make([]types.ClusterMember, len(c.members))}
	for i, m := range c.members {
		out.Members[i] = m.ClusterMember
	}
	return out
}

func cmpString(a, b string) int { return cmp.Compare(a, b) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
