// Package suite is what `make bench` runs: the swarm comparison of curl
// against dfget for several sizes and peer counts on one shaped origin, the
// issue #5 target configurations, and the supernode load benchmark, into
// one report.
package suite

import (
	"context"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/dfdaemonbench"
	"github.com/damselfly-p2p/damselfly/test/bench/load"
	"github.com/damselfly-p2p/damselfly/test/bench/report"
	"github.com/damselfly-p2p/damselfly/test/bench/swarm"
	"github.com/damselfly-p2p/damselfly/test/cluster"
)

// Sections that can be selected.
const (
	Swarm  = "swarm"
	Target = "target"
	Load   = "load"
	// Dfdaemon is the registry mirror section (test/bench/dfdaemonbench).
	Dfdaemon = "dfdaemon"
)

// Config selects what runs.
type Config struct {
	Only       []string // sections; empty means all
	Sizes      []int64  // bytes
	Peers      []int
	OriginRate int64 // bits/s
	// TargetSize and TargetPeers are the checked configurations.
	TargetSize  int64
	TargetPeers []int
	LoadClients int
	LoadPieces  int
	// LoadRates are the simulated per-piece download rates, one load run
	// each: a paced rate is the issue #6 run (target checked), the zero
	// rate the saturation run (requests/second, latency not checked).
	LoadRates []load.Rate
	// LoadWindow bounds each load run's measured phase.
	LoadWindow time.Duration
	// LoadProfileDir, when set, receives a supernode CPU profile per run.
	LoadProfileDir string
	// CDNSize is the file size of the CDN-vs-curl section.
	CDNSize int64
	// SingleSize is the file size of the single-download section.
	SingleSize    int64
	Mode          cluster.Mode
	DfgetArgs     []string
	SupernodeArgs []string
	Logf          func(format string, args ...any)
}

// Default is the default `make bench` run (about 15 minutes on 2 cores).
func Default() Config {
	return Config{
		Sizes:       []int64{64 << 20, 256 << 20},
		Peers:       []int{1, 4, 8, 16},
		OriginRate:  400 * cluster.Mbit,
		TargetSize:  128 << 20,
		TargetPeers: []int{8, 16},
		LoadClients: 1000,
		LoadPieces:  1000,
		// Paced clients below the saturation point (checked), then no
		// simulated time at all (the saturation throughput). A piece at
		// 100-400 MB/s would offer ~77,000 req/s, 6.6x the saturation
		// throughput on 2 cores: it is a saturation run in disguise (see
		// docs/benchmarks.md).
		LoadRates:  []load.Rate{{Lo: 2e6, Hi: 5e6}, {Lo: 5e6, Hi: 10e6}, {}},
		LoadWindow: 60 * time.Second,
		CDNSize:    1 << 30,
		SingleSize: 1 << 30,
	}
}

// Selected says whether a section runs.
func (c Config) Selected(section string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, section)
}

// Run runs the selected sections in order and returns the report; an
// interrupted context stops it early with what was measured so far.
func Run(ctx context.Context, cfg Config) *report.Report {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rep := &report.Report{Started: time.Now(), Mode: cfg.Mode.String()}
	defer func() { rep.Duration = time.Since(rep.Started) }()
	rep.Sections = append(rep.Sections, machineSection())
	// A closure: later appends move the sections.
	defer func() { machineLine(&rep.Sections[0], "at the end") }()
	runOne := func(client swarm.Client, n int, size int64, target bool) {
		if ctx.Err() != nil {
			return
		}
		spec := fmt.Sprintf("%s N=%d %s", client, n, swarm.FormatBytes(size))
		if free := freeBytes(os.TempDir()); free >= 0 && free < int64(n+2)*size*5/4 {
			rep.Rows = append(rep.Rows, report.Row{Spec: spec, Target: target,
				Error: fmt.Sprintf("skipped: %s free in %s, need %s", swarm.FormatBytes(free), os.TempDir(), swarm.FormatBytes(int64(n+2)*size*5/4))})
			return
		}
		res, err := swarm.Run(ctx, swarm.Config{
			Client: client, Peers: n, Size: size, OriginRate: cfg.OriginRate, SupernodeRate: cfg.OriginRate, Mode: cfg.Mode,
			DfgetArgs: cfg.DfgetArgs, SupernodeArgs: cfg.SupernodeArgs, Logf: logf,
		})
		row := report.Row{Spec: spec, Result: res, Target: target}
		if err != nil {
			row.Error = err.Error()
		}
		if res != nil {
			rep.Mode = res.Mode
			logf("  wall %.2fs, fluid %.2fs, ratio %.2f, origin %.3f x F, %d/%d correct",
				res.Wall.Seconds(), res.Fluid.Seconds(), res.Ratio(), res.OriginFactor(), countVerified(res), n)
		} else {
			logf("  error: %v", err)
		}
		rep.Rows = append(rep.Rows, row)
	}
	// The single downloads run first, on a machine no other section has
	// churned. After the load section's 15,000 MiB went through the page
	// cache and was freed, the dfget and the supernode of a cold download,
	// each writing a new GiB, took 1.74 and 1.84 s of system time per GiB
	// where they took 0.58-0.65 and about 0.7 without it, and even the
	// CDN alone took 1.35x curl's time, not 0.55-0.62x, while curl (one
	// new GiB, not two) stayed in its usual range: the cold row then
	// measured this VM handing memory back (docs/benchmarks.md, session 12).
	if cfg.Selected(Single) && ctx.Err() == nil {
		logf("dfget: single download vs curl, %s", swarm.FormatBytes(cfg.SingleSize))
		rep.Sections = append(rep.Sections, singleSection(ctx, cfg.SingleSize))
	}
	if cfg.Selected(Swarm) {
		for _, size := range cfg.Sizes {
			for _, n := range cfg.Peers {
				runOne(swarm.Curl, n, size, false)
				runOne(swarm.Dfget, n, size, false)
			}
		}
	}
	if cfg.Selected(Target) {
		for _, n := range cfg.TargetPeers {
			runOne(swarm.Dfget, n, cfg.TargetSize, true)
		}
	}
	if cfg.Selected(Load) {
		for _, rate := range cfg.LoadRates {
			if ctx.Err() != nil {
				break
			}
			res, err := load.Run(ctx, load.Config{Clients: cfg.LoadClients, Pieces: cfg.LoadPieces, Mode: cfg.Mode,
				SupernodeArgs: cfg.SupernodeArgs, Rate: rate, Window: cfg.LoadWindow, ProfileDir: cfg.LoadProfileDir, Logf: logf})
			if err != nil {
				rep.Sections = append(rep.Sections, report.Section{Title: fmt.Sprintf("Supernode load, piece rate %v", rate), Error: err.Error()})
				continue
			}
			rep.Loads = append(rep.Loads, report.LoadRow{Result: res, Target: rate.Lo > 0})
			rep.Mode = res.Mode
			logf("  %d requests, %.0f req/s, %d pieces, /peer/task unheld p50 %v p99 %v, held %.1f%% (p99 %v), server p99 %s, CPU %.1fs, %d failed",
				res.Requests, res.RPS, res.PiecesDone, res.TaskP50, res.TaskP99, 100*res.HeldShare(), res.HeldP99,
				res.ServerTaskP99, res.SupernodeCPU.Seconds(), res.Failed)
		}
	}
	if cfg.Selected(ClusterSection) && ctx.Err() == nil {
		rep.Sections = append(rep.Sections, clusterSection(ctx, cfg, rep, logf))
	}
	if cfg.Selected(Dfdaemon) && ctx.Err() == nil {
		logf("dfdaemon: registry mirror TTFB and peak RSS")
		dc := dfdaemonbench.Default()
		dc.Mode = cfg.Mode
		rep.Sections = append(rep.Sections, dfdaemonbench.Section(ctx, dc))
		if ctx.Err() == nil {
			logf("dfdaemon: 8 hosts pull an image through their dfdaemons, and directly")
			rep.Sections = append(rep.Sections, dfdaemonbench.PullSection(ctx, dfdaemonbench.DefaultPull()))
		}
	}
	if cfg.Selected(CDN) && ctx.Err() == nil {
		logf("cdn: curl vs supernode CDN fill, %s", swarm.FormatBytes(cfg.CDNSize))
		rep.Sections = append(rep.Sections, cdnSection(ctx, cfg.CDNSize))
	}
	if ctx.Err() != nil {
		rep.Note = "Interrupted: the table holds the runs finished before the interrupt."
	}
	return rep
}

func countVerified(r *swarm.Result) int {
	n := 0
	for _, p := range r.PeerResults {
		if p.Verified {
			n++
		}
	}
	return n
}

// freeBytes is the space available in dir, or -1 if unknown.
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}
