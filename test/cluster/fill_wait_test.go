package cluster

import (
	"math/rand/v2"
	"testing"
)

// Two supernodes with --cluster and --cdn-fill-limit 1, four files (two
// homed on each), every peer given one supernode at random as Dragonfly
// 1.x dfgets are, the first peer of each file its non-home supernode: each
// home has more new files than its cap, so a member asking for a file
// finds the home's fill of it waiting for a slot. The asker waits for that
// fill (without a slot of its own) instead of reading the origin too, so
// the origin serves each file once, and every peer gets exact bytes.
func TestClusterFillLimitWaitsForHome(t *testing.T) {
	const size = 16<<20 + 321
	m, ctx := startMulti(t, MultiSpec{Supernodes: 2, Files: 4, PeersPerFile: 3, Size: size, OriginRate: 200 * Mbit,
		Cluster: true, SupernodeArgs: []string{"--cdn-fill-limit", "1"}})
	r := homedRound(t, m, "fill-wait", 2)
	r.Nodes = randomNodes(m, r, rand.New(rand.NewPCG(5, 6)))
	res, err := m.Run(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range res.Errors {
		t.Error(err)
	}
	sums := sumMetrics(ctx, t, m, "dragonfly_supernode_cdn_cluster_bytes_total", "dragonfly_supernode_cluster_fetch_fallbacks_total",
		"dragonfly_supernode_cdn_fills_waiting_home")
	fromMembers, fallbacks, waited := sums[0], sums[1], sums[2]
	for f, n := range res.OriginBytes {
		// The one-byte length probes of waiting fills add a byte each.
		reads := n / size
		t.Logf("file %d (home sn%d): origin read it %d times (%d bytes)", f+1, m.Home(r.URLs[f])+1, reads, n)
		if reads != 1 {
			t.Errorf("file %d: the origin served it %d times (%d bytes), want once", f+1, reads, n)
		}
	}
	t.Logf("CDN bytes from members %.2f x F, fallbacks %.0f, fills still waiting for a home %.0f; all peers done in %s",
		fromMembers/size, fallbacks, waited, res.Wall)
	if fallbacks != 0 || waited != 0 {
		t.Errorf("%.0f fallbacks to the origin, %.0f fills left waiting for their home; want none", fallbacks, waited)
	}
}

// homedRound names the files of a round so that each supernode is home to
// perHome of them.
func homedRound(t *testing.T, m *Multi, tag string, perHome int) *Round {
	t.Helper()
	for range 1000 {
		r := m.NewRound(tag)
		homed := make([]int, len(m.Supernodes))
		for _, u := range r.URLs {
			homed[m.Home(u)]++
		}
		ok := true
		for _, n := range homed {
			ok = ok && n == perHome
		}
		if ok {
			return r
		}
	}
	t.Fatalf("no names found that give each supernode %d files", perHome)
	return nil
}
