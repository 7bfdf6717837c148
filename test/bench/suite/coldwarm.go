package suite

import (
	"context"
	"fmt"

	"github.com/damselfly-p2p/damselfly/test/bench/dfgetbench"
	"github.com/damselfly-p2p/damselfly/test/bench/report"
	"github.com/damselfly-p2p/damselfly/test/bench/swarm"
)

// coldWarmSize is the second size of the single-download section's cold
// and warm targets: a smaller file shows fixed costs (registration, CDN
// start, the peer server) that a large one hides.
const coldWarmSize = 256 << 20

// addColdWarmRows adds curl, cold and warm rows at coldWarmSize to s, with
// the same targets as the section's main size (unless that is the same).
func addColdWarmRows(ctx context.Context, s *report.Section, dfget, sn string, mainSize int64) {
	if mainSize == coldWarmSize || ctx.Err() != nil {
		return
	}
	size := swarm.FormatBytes(coldWarmSize)
	c, err := dfgetbench.MeasureColdWarm(ctx, dfgetbench.Config{DfgetBin: dfget, SupernodeBin: sn, Size: coldWarmSize, Runs: singleRounds})
	if err != nil {
		s.Add(size+" cold/warm", "ERROR: %v", err)
		s.Missed = append(s.Missed, size+" cold/warm")
		return
	}
	run := func(r dfgetbench.Run) string {
		return fmt.Sprintf("%.3f s (%.0f MiB/s)", r.Wall.Seconds(), mibps(coldWarmSize, r.Wall))
	}
	s.Add(size+": curl -o", "%s", run(c.Curl))
	s.Add(size+": dfget cold", "%s; %.2fx curl, target <= 1.30: %s; %s", run(c.Cold), c.ColdRatio(),
		s.Check(size+" dfget cold", c.ColdRatio() <= 1.3), cpuFloor(c.Cold, c.Curl.Wall))
	s.Add(size+": dfget warm", "%s; %.2fx curl, target <= 1.10: %s", run(c.Warm), c.WarmRatio(),
		s.Check(size+" dfget warm", c.WarmRatio() <= 1.1))
}
