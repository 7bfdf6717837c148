package suite

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/cdnbench"
	"github.com/damselfly-p2p/damselfly/test/bench/dfgetbench"
	"github.com/damselfly-p2p/damselfly/test/bench/report"
	"github.com/damselfly-p2p/damselfly/test/bench/swarm"
	"github.com/damselfly-p2p/damselfly/test/cluster"
)

// CDN is the section comparing the supernode's CDN fill with curl.
const CDN = "cdn"

// cdnRounds is how many side-by-side rounds of curl and the CDN fill the
// CDN section takes the best of (see singleRounds).
const cdnRounds = 5

// cdnSection times `curl -o` of a file from an unshaped loopback origin and
// then the supernode bringing the same file into its CDN cache
// (cdnbench.MeasureCDN, which runs its own supernode on loopback). The
// origin serves a file from the page cache, as nginx would: the cluster's
// synthetic origin computes its bytes, and on two cores that CPU was taken
// from the supernode (1.46x curl against it, 0.68x against a file in the
// same run of 2026-12-01).
func cdnSection(ctx context.Context, size int64) report.Section {
	s := report.Section{Title: fmt.Sprintf("Supernode CDN fill vs curl (%s, loopback, unshaped, file origin, best of %d rounds)",
		swarm.FormatBytes(size), cdnRounds)}
	fail := func(err error) report.Section { s.Error = err.Error(); return s }
	bin, err := cluster.Binary("supernode")
	if err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "cdnsection-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	url, stop, err := dfgetbench.RandomFileOrigin(dir, size)
	if err != nil {
		return fail(err)
	}
	defer stop()
	var curl, cdn time.Duration
	for round := range cdnRounds {
		c, err := dfgetbench.CurlTime(ctx, dir, url)
		if err != nil {
			return fail(err)
		}
		f, err := cdnbench.MeasureCDN(ctx, fmt.Sprintf("%s?cdn=%d", url, round), bin)
		if err != nil {
			return fail(fmt.Errorf("MeasureCDN: %w", err))
		}
		if curl == 0 || c < curl {
			curl = c
		}
		if cdn == 0 || f < cdn {
			cdn = f
		}
	}
	s.Add("curl -o", "%.3f s (%.0f MiB/s)", curl.Seconds(), mibps(size, curl))
	s.Add("supernode register to cdnStatus SUCCESS", "%.3f s (%.0f MiB/s)", cdn.Seconds(), mibps(size, cdn))
	s.Add("CDN / curl", "%.2f, target <= 1.20: %s", cdn.Seconds()/curl.Seconds(), s.Check("CDN fill", cdn.Seconds() <= 1.2*curl.Seconds()))
	return s
}

// cpuFloor says how long r's processes (the dfget, its peer server and the
// supernode, all on this machine) needed at least on its cores, against
// curl's time: a cold download's CDN fill and the dfget share the cores.
func cpuFloor(r dfgetbench.Run, curl time.Duration) string {
	n := runtime.NumCPU()
	floor := r.CPUFloor(n)
	return fmt.Sprintf("with the supernode's %.2f CPU-s, at least %.3f s on %d cores = %.2fx curl (system time: dfget %.2f s, supernode %.2f s)",
		r.SupernodeCPU.Seconds(), floor.Seconds(), n, floor.Seconds()/curl.Seconds(), r.Sys.Seconds(), r.SupernodeSys.Seconds())
}

func mibps(size int64, d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }

// Single is the section of single-download figures (test/bench/dfgetbench).
const Single = "dfget"

// singleRounds is how many rounds the single-download rows take the best
// of: each round runs every kind side by side, and on two shared cores one
// round's ratio moved by 2x from one run to the next (docs/benchmarks.md).
// Five, not three: on this VM curl's system time for 1 GiB moved between
// 1.2 and 2.7 s from one run to the next, most of it writing into new
// page-cache pages (docs/benchmarks.md), and dfget's with it; three
// rounds could leave one kind without a single fast one.
const singleRounds = 5

// singleSection runs dfgetbench.Measure: curl against dfget cold, warm and
// --stream on one loopback file.
func singleSection(ctx context.Context, size int64) report.Section {
	s := report.Section{Title: fmt.Sprintf("Single download, dfget vs curl (%s, loopback, test/bench/dfgetbench, best of %d rounds)",
		swarm.FormatBytes(size), singleRounds)}
	dfget, err := cluster.Binary("dfget")
	if err != nil {
		s.Error = err.Error()
		return s
	}
	sn, err := cluster.Binary("supernode")
	if err != nil {
		s.Error = err.Error()
		return s
	}
	f, err := dfgetbench.Measure(ctx, dfgetbench.Config{DfgetBin: dfget, SupernodeBin: sn, Size: size, Runs: singleRounds})
	if err != nil {
		s.Error = fmt.Sprintf("dfgetbench.Measure: %v", err)
		return s
	}
	run := func(r dfgetbench.Run) string {
		return fmt.Sprintf("%.3f s (%.0f MiB/s), CPU %.2f s + peer server %.2f s = %.2f CPU-s/GiB, peak RSS %s",
			r.Wall.Seconds(), f.MBps(r.Wall), r.CPU.Seconds(), r.ServerCPU.Seconds(), f.CPUPerGiB(r), swarm.FormatBytes(r.PeakRSS))
	}
	cpu := func(name string, r dfgetbench.Run) string {
		return fmt.Sprintf("CPU %.2fx curl's, target <= 2: %s", f.CPURatio(r), s.Check(name+" CPU/GiB", f.CPURatio(r) <= 2))
	}
	cdn := f.CDN.Seconds() / f.Curl.Wall.Seconds()
	s.Add("curl -o", "%s", run(f.Curl))
	s.Add("supernode CDN fill (cdnbench)", "%.3f s (%.0f MiB/s); %.2fx curl, target <= 1.20: %s", f.CDN.Seconds(), f.MBps(f.CDN),
		cdn, s.Check("CDN fill", cdn <= 1.2))
	s.Add("dfget cold (task not in the CDN)", "%s; %.2fx curl, target <= 1.30: %s; %s; %s", run(f.Cold), f.ColdRatio(),
		s.Check("dfget cold", f.ColdRatio() <= 1.3), cpu("dfget cold", f.Cold), cpuFloor(f.Cold, f.Curl.Wall))
	s.Add("dfget warm (task in the CDN)", "%s; %.2fx curl, target <= 1.10: %s; %s", run(f.Warm), f.WarmRatio(),
		s.Check("dfget warm", f.WarmRatio() <= 1.1), cpu("dfget warm", f.Warm))
	med, lo, hi := f.StreamSpread()
	s.Add("dfget --stream (warm, alone on its task: no stream cache)",
		"%s; TTFB %v; %.2fx file-mode throughput, target >= 0.80: %s; each round against its own file-mode run: median %.2fx (%.2f-%.2fx)",
		run(f.Stream), f.Stream.TTFB.Round(time.Millisecond), f.StreamVsFile(), s.Check("dfget --stream", f.StreamVsFile() >= 0.8), med, lo, hi)
	s.Add("dfget --stream (warm, another client lacking pieces: pieces into the stream cache)", "%s; TTFB %v; %.2fx file-mode throughput; peer server peak RSS %s",
		run(f.StreamShared), f.StreamShared.TTFB.Round(time.Millisecond), f.SharedVsFile(), swarm.FormatBytes(f.StreamServerRSS))
	addColdWarmRows(ctx, &s, dfget, sn, size)
	return s
}
