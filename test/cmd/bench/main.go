// Command bench runs the benchmark suite (test/bench/suite), prints one
// Markdown report on stdout, saves it as JSON in bench-results/, and exits
// 1 if a run failed or a checked target was missed, 3 if nothing failed but
// targets went unchecked (loopback mode), 0 otherwise. Progress goes
// to stderr.
//
// Environment: BENCH_ONLY=swarm,target,load,dfget,cluster,cdn,dfdaemon selects sections; BENCH_FULL=1
// adds 1 GiB files; BENCH_SIZES (MiB) and BENCH_PEERS override the lists;
// BENCH_ORIGIN_MBIT (400) shapes the origin; BENCH_LOAD_CLIENTS and
// BENCH_LOAD_PIECES size the load runs, BENCH_LOAD_MBPS=2-5,5-10,0 sets their
// simulated per-piece download rates (MB/s; 0 is the saturation run),
// BENCH_LOAD_SECONDS their window and BENCH_LOAD_PROFILE a directory for
// supernode CPU profiles; BENCH_CDN_MIB and BENCH_SINGLE_MIB size the CDN and single-download runs; BENCH_DFGET_ARGS and
// BENCH_SUPERNODE_ARGS add flags; BENCH_LOOPBACK=1 forces loopback mode.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/load"
	"github.com/damselfly-p2p/damselfly/test/bench/suite"
	"github.com/damselfly-p2p/damselfly/test/cluster"
)

func main() {
	cfg, err := config()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	rep := suite.Run(ctx, cfg)
	rep.WriteMarkdown(os.Stdout)
	dir := "bench-results"
	if root, err := cluster.RepoRoot(); err == nil {
		dir = filepath.Join(root, dir)
	}
	path, err := rep.Save(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "results saved to", path)
	if len(rep.Failed()) > 0 || ctx.Err() != nil {
		os.Exit(1)
	}
	if len(rep.Unchecked()) > 0 {
		// Correct, but its targets cannot have been met: not 0.
		os.Exit(3)
	}
}

func config() (suite.Config, error) {
	cfg := suite.Default()
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		cfg.Only = strings.Split(v, ",")
	}
	if os.Getenv("BENCH_FULL") == "1" {
		cfg.Sizes = append(cfg.Sizes, 1<<30)
	}
	if v := os.Getenv("BENCH_SIZES"); v != "" {
		mib, err := ints(v)
		if err != nil {
			return cfg, fmt.Errorf("BENCH_SIZES: %w", err)
		}
		cfg.Sizes = nil
		for _, m := range mib {
			cfg.Sizes = append(cfg.Sizes, int64(m)<<20)
		}
	}
	var err error
	if v := os.Getenv("BENCH_PEERS"); v != "" {
		if cfg.Peers, err = ints(v); err != nil {
			return cfg, fmt.Errorf("BENCH_PEERS: %w", err)
		}
	}
	if v := os.Getenv("BENCH_TARGET_PEERS"); v != "" {
		if cfg.TargetPeers, err = ints(v); err != nil {
			return cfg, fmt.Errorf("BENCH_TARGET_PEERS: %w", err)
		}
	}
	for env, dst := range map[string]*int{"BENCH_LOAD_CLIENTS": &cfg.LoadClients, "BENCH_LOAD_PIECES": &cfg.LoadPieces} {
		if v := os.Getenv(env); v != "" {
			if *dst, err = strconv.Atoi(v); err != nil || *dst < 1 {
				return cfg, fmt.Errorf("%s=%q: want a positive integer", env, v)
			}
		}
	}
	for env, dst := range map[string]*int64{"BENCH_CDN_MIB": &cfg.CDNSize, "BENCH_SINGLE_MIB": &cfg.SingleSize} {
		if v := os.Getenv(env); v != "" {
			m, err := strconv.ParseInt(v, 10, 64)
			if err != nil || m < 1 {
				return cfg, fmt.Errorf("%s=%q: want a positive integer", env, v)
			}
			*dst = m << 20
		}
	}
	if v := os.Getenv("BENCH_ORIGIN_MBIT"); v != "" {
		m, err := strconv.ParseInt(v, 10, 64)
		if err != nil || m < 1 {
			return cfg, fmt.Errorf("BENCH_ORIGIN_MBIT=%q: want a positive integer", v)
		}
		cfg.OriginRate = m * cluster.Mbit
	}
	if v := os.Getenv("BENCH_LOAD_MBPS"); v != "" {
		cfg.LoadRates = nil
		for _, f := range strings.Split(v, ",") {
			r, err := load.ParseRate(f)
			if err != nil {
				return cfg, fmt.Errorf("BENCH_LOAD_MBPS: %w", err)
			}
			cfg.LoadRates = append(cfg.LoadRates, r)
		}
	}
	if v := os.Getenv("BENCH_LOAD_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s < 1 {
			return cfg, fmt.Errorf("BENCH_LOAD_SECONDS=%q: want a positive integer", v)
		}
		cfg.LoadWindow = time.Duration(s) * time.Second
	}
	cfg.LoadProfileDir = os.Getenv("BENCH_LOAD_PROFILE")
	cfg.DfgetArgs = strings.Fields(os.Getenv("BENCH_DFGET_ARGS"))
	cfg.SupernodeArgs = strings.Fields(os.Getenv("BENCH_SUPERNODE_ARGS"))
	if os.Getenv("BENCH_LOOPBACK") == "1" {
		cfg.Mode = cluster.ModeLoopback
	}
	return cfg, nil
}

// ints parses a comma-separated list of positive integers.
func ints(s string) ([]int, error) { return intList(s, 1) }

func intList(s string, least int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < least {
			return nil, fmt.Errorf("%q: want integers >= %d separated by commas", s, least)
		}
		out = append(out, n)
	}
	return out, nil
}
