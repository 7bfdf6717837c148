package gate

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gauges() (run, wait prometheus.Gauge) {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: "r"}), prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
}

// value is g's current value.
func value(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

// The line is first come first served, and a job that leaves it keeps
// the others' order.
func TestOrder(t *testing.T) {
	run, wait := gauges()
	g := New(1, run, wait)
	if !g.Join().Granted() {
		t.Fatal("first job waits with a slot free")
	}
	a, b, c := g.Join(), g.Join(), g.Join()
	if a.Granted() || b.Granted() || c.Granted() || value(wait) != 3 {
		t.Fatalf("jobs past the cap granted, or %v waiting", value(wait))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(ctx, b); !errors.Is(err, context.Canceled) || value(wait) != 2 {
		t.Fatalf("leaving the line: %v, %v waiting", err, value(wait))
	}
	g.Release()
	if !a.Granted() || c.Granted() {
		t.Fatal("the slot did not go to the first in line")
	}
	// a was granted before its context ended: it holds the slot.
	if err := g.Wait(ctx, a); err != nil {
		t.Fatalf("a granted turn: %v", err)
	}
	g.Release()
	if !c.Granted() || value(run) != 1 || value(wait) != 0 {
		t.Fatalf("c granted %v, running %v, waiting %v", c.Granted(), value(run), value(wait))
	}
	g.Release()
	if value(run) != 0 {
		t.Fatalf("running %v after the last release", value(run))
	}
}

// A job that gives its place up leaves the line, or, granted a slot
// meanwhile, hands it on.
func TestLeave(t *testing.T) {
	run, wait := gauges()
	g := New(1, run, wait)
	first := g.Join()
	a, b := g.Join(), g.Join()
	g.Leave(a)
	if a.Granted() || value(wait) != 1 {
		t.Fatalf("a left the line: granted %v, %v waiting", a.Granted(), value(wait))
	}
	g.Release()
	if !first.Granted() || !b.Granted() || value(run) != 1 || value(wait) != 0 {
		t.Fatalf("b granted %v, running %v, waiting %v", b.Granted(), value(run), value(wait))
	}
	g.Leave(b)
	if value(run) != 0 {
		t.Fatalf("running %v once the granted job left", value(run))
	}
	if !g.Join().Granted() {
		t.Fatal("the slot left by b is not free")
	}
}

// Without gauges, and with a limit below 1, a gate still holds one slot.
func TestNoGaugesOneSlot(t *testing.T) {
	g := New(0, nil, nil)
	if !g.Join().Granted() || g.Join().Granted() {
		t.Fatal("a gate of limit 0 is not one slot")
	}
	g.Release()
}

// A job that rejoins takes a free slot, or the front of the line, behind
// only the jobs that rejoined before it.
func TestRejoin(t *testing.T) {
	run, wait := gauges()
	g := New(1, run, wait)
	if !g.Rejoin().Granted() {
		t.Fatal("a job rejoining with a slot free waits")
	}
	a := g.Join()
	b1, b2 := g.Rejoin(), g.Rejoin()
	order := []*Turn{b1, b2, a}
	for i := range order {
		g.Release()
		for j, other := range order {
			if other.Granted() != (j <= i) {
				t.Fatalf("after %d releases: turn %d granted %t", i+1, j, other.Granted())
			}
		}
	}
	g.Release()
	if value(run) != 0 || value(wait) != 0 {
		t.Fatalf("running %v, waiting %v after the last release", value(run), value(wait))
	}
}
