// Package gate caps how many jobs run at once, first come first served:
// a job past the cap takes a place in line and gets a slot when the jobs
// before it have theirs and one frees. The supernode caps its CDN fills
// with it, dfdaemon its streams: each holds buffers for as long as it
// runs, so memory grows with the jobs at once unless they are capped.
package gate

import (
	"context"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Gate hands out limit slots in the order they were asked for.
type Gate struct {
	mu      sync.Mutex
	limit   int
	running int
	line    []*Turn // the jobs waiting, first in line first

	runGauge, waitGauge prometheus.Gauge
}

// Turn is one job's place: ready is closed once it holds a slot. back
// marks a job that rejoined (Rejoin).
type Turn struct {
	ready chan struct{}
	back  bool
}

// New returns a gate of limit slots (at least 1). running and waiting,
// when not nil, show the jobs holding a slot and those in line.
func New(limit int, running, waiting prometheus.Gauge) *Gate {
	return &Gate{limit: max(limit, 1), runGauge: running, waitGauge: waiting}
}

// Join takes a slot when one is free and nobody waits, else a place at
// the end of the line.
func (g *Gate) Join() *Turn {
	t := &Turn{ready: make(chan struct{})}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running < g.limit && len(g.line) == 0 {
		g.running++
		close(t.ready)
	} else {
		g.line = append(g.line, t)
	}
	g.show()
	return t
}

// Rejoin is Join for a job that held a slot and gave it back while it
// waited on something else (the CDN: a fill waiting for its cluster
// home's fill, which must not hold a slot meanwhile): it takes a free
// slot, or the first place in line, behind only the jobs that rejoined
// before it. It already had its turn; at the end of the line it would
// wait a second one, and under a steady stream of new jobs could wait out
// whatever bounds its wait. Every job it passes joined after it did.
func (g *Gate) Rejoin() *Turn {
	t := &Turn{ready: make(chan struct{}), back: true}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running < g.limit {
		// A free slot means an empty line: releaseLocked hands slots on.
		g.running++
		close(t.ready)
	} else {
		i := 0
		for i < len(g.line) && g.line[i].back {
			i++
		}
		g.line = slices.Insert(g.line, i, t)
	}
	g.show()
	return t
}

// Granted reports whether t holds a slot.
func (t *Turn) Granted() bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// Wait blocks until t holds a slot or ctx ends; then t leaves the line,
// handing on a slot granted meanwhile, and Wait returns ctx's error. A
// turn granted before ctx ended holds its slot: the caller Releases it.
func (g *Gate) Wait(ctx context.Context, t *Turn) error {
	if t.Granted() {
		return nil
	}
	select {
	case <-t.ready:
		return nil
	case <-ctx.Done():
	}
	g.Leave(t)
	return ctx.Err()
}

// Leave gives t's place up: t leaves the line or, granted meanwhile,
// hands its slot on.
func (g *Gate) Leave(t *Turn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, w := range g.line {
		if w == t {
			g.line = append(g.line[:i], g.line[i+1:]...)
			g.show()
			return
		}
	}
	g.releaseLocked()
}

// Release frees a slot: the first job in line gets it.
func (g *Gate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked()
}

func (g *Gate) releaseLocked() {
	if len(g.line) > 0 {
		next := g.line[0]
		g.line[0] = nil
		g.line = g.line[1:]
		close(next.ready)
	} else {
		g.running--
	}
	g.show()
}

func (g *Gate) show() {
	if g.runGauge != nil {
		g.runGauge.Set(float64(g.running))
	}
	if g.waitGauge != nil {
		g.waitGauge.Set(float64(len(g.line)))
	}
}
