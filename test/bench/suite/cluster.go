package suite

import (
	"context"
	"fmt"
	"strings"

	"github.com/damselfly-p2p/damselfly/test/bench/report"
	"github.com/damselfly-p2p/damselfly/test/bench/swarm"
)

// ClusterSection is the supernode-cluster section: three supernodes, three
// files downloaded at once by their own peers each.
const ClusterSection = "cluster"

// Targets of the cluster rows.
const (
	targetHomeOrigin    = 1.02 // origin bytes / F per file, full node list
	targetClusterOrigin = 1.05 // with --cluster and one supernode per peer
	targetClusterRatio  = 1.5  // wall / time of the origin link for all files
	targetKilledOrigin  = 2.0  // origin bytes / F when a file's home dies mid-download
)

// clusterSection runs the rendezvous order with the same list, shuffled
// lists and one DNS name (checked, each supernode's origin reads too: the
// files' homes are spread, so each reads one file), Dragonfly 1.x's
// random order beside them (not checked: the cost it shows is what the
// rendezvous order removes), --cluster with one supernode per peer
// (checked), and the kill of a home mid-download (origin and correctness
// checked; its wall time is not a target).
func clusterSection(ctx context.Context, cfg Config, rep *report.Report, logf func(string, ...any)) report.Section {
	const sns, files, peers = 3, 3, 8
	s := report.Section{Title: fmt.Sprintf("Supernode cluster: %d supernodes, %d files x %d peers of %s at once, origin %s",
		sns, files, peers, swarm.FormatBytes(cfg.TargetSize), swarm.FormatRate(cfg.OriginRate))}
	for _, row := range []struct {
		order, label string
		origin       float64 // 0: not checked
		ratio        float64 // 0: not checked
	}{
		{swarm.OrderHome, "full node list, rendezvous order", targetHomeOrigin, targetClusterRatio},
		{swarm.OrderShuffled, "full node list, shuffled per peer, rendezvous order", targetHomeOrigin, targetClusterRatio},
		{swarm.OrderDNS, "one DNS name with every supernode's address, rendezvous order", targetHomeOrigin, targetClusterRatio},
		{swarm.OrderRandom, "full node list, Dragonfly 1.x random order (--node-order random)", 0, 0},
		{swarm.OrderOne, "--cluster, one random supernode per peer", targetClusterOrigin, targetClusterRatio},
		{swarm.OrderHomeKilled, "--cluster, full node list, file 1's home killed (SIGKILL) at a third", targetKilledOrigin, 0},
	} {
		if ctx.Err() != nil {
			break
		}
		logf("cluster: %s", row.label)
		res, err := swarm.RunCluster(ctx, swarm.ClusterConfig{Supernodes: sns, Files: files, PeersPerFile: peers,
			Size: cfg.TargetSize, OriginRate: cfg.OriginRate, Order: row.order, Mode: cfg.Mode,
			DfgetArgs: cfg.DfgetArgs, SupernodeArgs: cfg.SupernodeArgs, Logf: logf})
		if err != nil {
			s.Add(row.label, "ERROR: %s", strings.SplitN(err.Error(), "\n", 2)[0])
			s.Missed = append(s.Missed, row.label)
			continue
		}
		rep.Mode = res.Mode
		line := fmt.Sprintf("wall %.2f s, origin link limit %.2f s (ratio %.2f); origin bytes / F per file %s; "+
			"CDN origin reads / F per supernode %s; %d/%d correct", res.Wall.Seconds(), res.Fluid.Seconds(), res.Ratio(),
			factors(res.OriginFactors), factors(res.SupernodeOrigin), res.Verified, res.Peers)
		switch {
		case row.origin > 0 && row.ratio > 0 && res.Mode == "loopback":
			ok := res.Verified == res.Peers && res.MaxOriginFactor() <= row.origin
			line += fmt.Sprintf("; target (<=%.2fxF) %s, (<=%.1fx) %s", row.origin, s.Check(row.label, ok),
				row.ratio, s.NotChecked(row.label+" time"))
		case row.origin > 0 && row.ratio > 0:
			ok := res.Verified == res.Peers && res.MaxOriginFactor() <= row.origin && res.Ratio() <= row.ratio
			// Without --cluster, a supernode reading more than its one
			// file means the peers did not all meet at the homes.
			if row.order != swarm.OrderOne {
				ok = ok && res.MaxSupernodeOrigin() <= row.origin
			}
			line += fmt.Sprintf("; target (<=%.2fxF, <=%.1fx) %s", row.origin, row.ratio, s.Check(row.label, ok))
		case row.origin > 0:
			ok := res.Verified == res.Peers && res.MaxOriginFactor() <= row.origin
			line += fmt.Sprintf("; target (<=%.2fxF, all correct) %s", row.origin, s.Check(row.label, ok))
		default:
			if res.Verified != res.Peers {
				s.Missed = append(s.Missed, row.label+" (wrong content)")
			}
		}
		logf("  %s", line)
		s.Add(row.label, "%s", line)
	}
	return s
}

// factors prints origin factors; a negative one (no figure) as "-".
func factors(fs []float64) string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = "-"
		if f >= 0 {
			out[i] = fmt.Sprintf("%.3f", f)
		}
	}
	return strings.Join(out, ", ")
}
