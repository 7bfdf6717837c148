package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/cluster/synth"
)

// swarmRun is one simultaneous download of a file by every peer.
type swarmRun struct {
	durations []time.Duration
	sent      []int64 // bytes each peer put on its uplink
}

// runSwarm has every peer download name at once through sn and checks
// every byte; it returns per-peer durations and uplink bytes.
func runSwarm(ctx context.Context, t *testing.T, o *Origin, sn *Supernode, peers []*Host, name string, size int64) swarmRun {
	t.Helper()
	var r swarmRun
	before := make([]Counters, len(peers))
	for i, h := range peers {
		k, err := h.Counters()
		if err != nil {
			t.Fatal(err)
		}
		before[i] = k
	}
	procs := make([]*Proc, len(peers))
	outs := make([]string, len(peers))
	for i, h := range peers {
		outs[i] = filepath.Join(h.Dir(), "out", name)
		if err := os.MkdirAll(filepath.Dir(outs[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		procs[i], err = h.StartDfget(ctx, Dfget{URL: o.URL(name, size), Output: outs[i], Nodes: []string{sn.Node()}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatalf("%s: %v", peers[i].Name, err)
		}
		f, err := os.Open(outs[i])
		if err != nil {
			t.Fatal(err)
		}
		err = synth.Verify(f, name, size)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", peers[i].Name, err)
		}
		k, err := peers[i].Counters()
		if err != nil {
			t.Fatal(err)
		}
		r.durations = append(r.durations, p.Duration())
		r.sent = append(r.sent, k.Sub(before[i]).Sent)
	}
	return r
}

// A peer whose uplink is throttled to 4 Mbit/s (tc) joins a swarm of
// peers with unshaped links: it must not hold the others back. The same
// swarm runs first without the slow peer as the baseline, on a different
// file preheated into the supernode: the slow-seed run finds its file in
// the supernode's cache (the seed's own download put it there), so both
// runs are warm and differ only in the seed. The checks are on bytes and
// generous bounds, not tight timings: every file is exact, the slow peer
// uploads little (its pieces are fetched elsewhere), and the fast peers'
// slowest finish stays within 2x the baseline plus the time the slow
// uplink needs for two pieces.
func TestFaultSlowPeerNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: end-to-end swarm")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := NewForTest(t, Options{Mode: ModeNetns})
	add := func(spec HostSpec) *Host {
		h, err := c.AddHost(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	const slowRate = 4 * Mbit
	oh := add(HostSpec{Name: "origin", Uplink: 400 * Mbit})
	sh := add(HostSpec{Name: "supernode", Uplink: 400 * Mbit})
	fast := []*Host{add(HostSpec{Name: "fast1"}), add(HostSpec{Name: "fast2"}), add(HostSpec{Name: "fast3"})}
	slow := add(HostSpec{Name: "slow", Uplink: slowRate})
	o, err := c.StartOrigin(ctx, oh)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.StartSupernode(ctx, sh)
	if err != nil {
		t.Fatal(err)
	}
	const size = 48 << 20
	if err := preheat(ctx, sn, o.URL("base.bin", size)); err != nil {
		t.Fatal(err)
	}
	base := runSwarm(ctx, t, o, sn, fast, "base.bin", size)
	// The slow peer gets the file first, so it holds every piece when the
	// fast peers start: the worst case, a seed that can barely upload.
	seed := runSwarm(ctx, t, o, sn, []*Host{slow}, "slow.bin", size)
	k0, err := slow.Counters()
	if err != nil {
		t.Fatal(err)
	}
	run := runSwarm(ctx, t, o, sn, fast, "slow.bin", size)
	k1, err := slow.Counters()
	if err != nil {
		t.Fatal(err)
	}
	slowSent := k1.Sub(k0).Sent
	slowest := func(ds []time.Duration) time.Duration {
		var m time.Duration
		for _, d := range ds {
			m = max(m, d)
		}
		return m
	}
	b, f := slowest(base.durations), slowest(run.durations)
	t.Logf("baseline (3 fast, warm): durations %v, uplink bytes %v", base.durations, base.sent)
	t.Logf("slow seed (%d Mbit/s uplink) alone: %v", slowRate/Mbit, seed.durations[0])
	t.Logf("3 fast with the slow seed: durations %v, uplink bytes %v; slow seed uploaded %d bytes (%.2f x F)",
		run.durations, run.sent, slowSent, float64(slowSent)/size)
	pieceTime := time.Duration(float64(4<<20*8) / slowRate * float64(time.Second))
	if bound := 2*b + 2*pieceTime; f > bound {
		t.Errorf("fast peers' slowest finish %v with the slow seed, baseline %v: over the bound %v", f, b, bound)
	}
	if slowSent > size/4 {
		t.Errorf("slow seed uploaded %d bytes (%.2f x F): its pieces were not fetched elsewhere", slowSent, float64(slowSent)/size)
	}
}
