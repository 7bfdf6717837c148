// Command demo brings up an origin, a supernode and a few dfget peers on
// this machine (network namespaces when root, loopback otherwise), has every
// peer download the same file at once and prints what happened. It exits
// non-zero if anything failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/swarm"
	"github.com/damselfly-p2p/damselfly/test/cluster"
)

func main() {
	peers := flag.Int("peers", 4, "number of dfget peers")
	sizeMiB := flag.Int64("size", 64, "file size in MiB")
	rate := flag.Int64("rate", 400, "origin and supernode uplinks in Mbit/s (namespace mode)")
	loopback := flag.Bool("loopback", false, "use loopback addresses even when namespaces work")
	timeout := flag.Duration("timeout", 50*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*peers, *sizeMiB<<20, *rate*cluster.Mbit, *loopback, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "demo FAILED:", err)
		os.Exit(1)
	}
}

func run(peers int, size, rate int64, loopback bool, timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mode := cluster.ModeAuto
	if loopback {
		mode = cluster.ModeLoopback
	}
	cfg := swarm.Config{
		Client: swarm.Dfget, Peers: peers, Size: size, OriginRate: rate, SupernodeRate: rate, Mode: mode, Timeout: timeout,
		Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) },
	}
	res, err := swarm.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Println()
	swarm.WriteSummary(os.Stdout, res)
	if !res.AllVerified {
		return fmt.Errorf("%d peers did not get the right content", countFailed(res))
	}
	return nil
}

func countFailed(r *swarm.Result) int {
	n := 0
	for _, p := range r.PeerResults {
		if !p.Verified {
			n++
		}
	}
	return n
}
