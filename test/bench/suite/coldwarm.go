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

// coldWarmRounds is how many rounds the coldWarmSize rows take. A round
// is short (about 1 s of downloads), so its fixed costs and the moment
// it lands on swing its ratio most: within one five-round run 0.91-1.43x,
// and the median between 1.08x and 1.39x over runs of the same code.
// Eleven rounds cost about 10 s more and steady the median.
const coldWarmRounds = 11

// addColdWarmRows adds curl, cold and warm rows at coldWarmSize to s, with
// the same targets as the section's main size (unless that is the same).
func addColdWarmRows(ctx context.Context, s *report.Section, dfget, sn string, mainSize int64) {
	if mainSize == coldWarmSize || ctx.Err() != nil {
		return
	}
	size := swarm.FormatBytes(coldWarmSize)
	c, err := dfgetbench.MeasureColdWarm(ctx, dfgetbench.Config{DfgetBin: dfget, SupernodeBin: sn, Size: coldWarmSize, Runs: coldWarmRounds})
	if err != nil {
		s.Add(size+" cold/warm", "ERROR: %v", err)
		s.Missed = append(s.Missed, size+" cold/warm")
		return
	}
	run := func(r dfgetbench.Run) string {
		return fmt.Sprintf("%.3f s (%.0f MiB/s)", r.Wall.Seconds(), mibps(coldWarmSize, r.Wall))
	}
	s.Add(size+": curl -o", "%s", run(c.Curl))
	s.Add(size+": dfget cold", "%s; per round %v curl, target <= 1.30: %s; best of %d %.2fx; %s", run(c.Cold), c.Rounds.Cold(),
		s.Check(size+" dfget cold", c.Rounds.Cold().Median <= 1.3), c.Runs, c.ColdRatio(), cpuFloor(c.Cold, c.Curl.Wall))
	s.Add(size+": dfget warm", "%s; per round %v curl, target <= 1.10: %s; best of %d %.2fx", run(c.Warm), c.Rounds.Warm(),
		s.Check(size+" dfget warm", c.Rounds.Warm().Median <= 1.1), c.Runs, c.WarmRatio())
}
