// Package swarm runs one download configuration on a fresh cluster: N
// clients (curl straight from the origin, or dfget peers with a supernode)
// fetch the same synthetic file at once from a shaped origin, and it
// measures wall time, bytes from the origin, bytes between peers, peak RSS,
// and verifies every byte written. The demo and the benchmark both use it.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/test/cluster"
)

// Client is what the peers run.
type Client string

const (
	Curl  Client = "curl"
	Dfget Client = "dfget"
)

// Config is one configuration.
type Config struct {
	Client Client
	Peers  int
	Size   int64
	// OriginRate shapes the origin's uplink, bits/s (required).
	OriginRate int64
	// SupernodeRate shapes the supernode's uplink, bits/s; 0 leaves it
	// unshaped. With it equal to OriginRate the supernode cannot feed N
	// peers alone, so meeting the fluid limit takes peer-to-peer transfer.
	SupernodeRate int64
	// PeerRate shapes each peer's uplink, bits/s; 0 leaves it unshaped.
	PeerRate int64
	Mode     cluster.Mode
	BaseDir  string
	// DfgetArgs are extra dfget flags.
	DfgetArgs []string
	// SupernodeArgs are extra supernode flags.
	SupernodeArgs []string
	// Timeout bounds the downloads; 0 derives one from the fluid limit.
	Timeout time.Duration
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Peer is one client's outcome.
type Peer struct {
	Host     string        `json:"host"`
	IP       string        `json:"ip"`
	Duration time.Duration `json:"durationNs"`
	MaxRSS   int64         `json:"maxRssBytes"`
	// Sent and Received are interface bytes (namespace mode only; -1
	// otherwise).
	Sent     int64  `json:"sentBytes"`
	Received int64  `json:"receivedBytes"`
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
}

// Result is one configuration's outcome.
type Result struct {
	Client     Client `json:"client"`
	Peers      int    `json:"peers"`
	Size       int64  `json:"sizeBytes"`
	OriginRate int64  `json:"originRateBits"`
	PeerRate   int64  `json:"peerRateBits"`
	// SupernodeRate is the supernode's uplink (0 unshaped; dfget only).
	SupernodeRate int64  `json:"supernodeRateBits"`
	Mode          string `json:"mode"`
	// Wall is from launching the first client to the exit of the last.
	Wall time.Duration `json:"wallNs"`
	// Fluid is the fluid-model lower bound on Wall (see FluidLimit).
	Fluid time.Duration `json:"fluidNs"`
	// OriginBytes are file bytes the origin served for this file.
	OriginBytes int64 `json:"originBytes"`
	// OriginWire is the origin's interface bytes sent (-1 in loopback mode).
	OriginWire int64 `json:"originWireBytes"`
	// PeerUpload is the sum of the peers' interface bytes sent (-1 in
	// loopback mode).
	PeerUpload int64 `json:"peerUploadBytes"`
	// SupernodeServed is what the supernode reports serving to peers
	// (dragonfly_supernode_pieces_downloaded_size_bytes_total; -1 unknown).
	SupernodeServed int64  `json:"supernodeServedBytes"`
	MaxRSS          int64  `json:"maxRssBytes"`
	AllVerified     bool   `json:"allVerified"`
	PeerResults     []Peer `json:"peerResults"`
}

// Ratio is Wall over the fluid limit.
func (r *Result) Ratio() float64 {
	if r.Fluid <= 0 {
		return math.NaN()
	}
	return float64(r.Wall) / float64(r.Fluid)
}

// OriginFactor is bytes from the origin divided by the file size.
func (r *Result) OriginFactor() float64 {
	if r.Size == 0 {
		return math.NaN()
	}
	return float64(r.OriginBytes) / float64(r.Size)
}

// Slowest is the longest per-peer time.
func (r *Result) Slowest() time.Duration {
	var m time.Duration
	for _, p := range r.PeerResults {
		m = max(m, p.Duration)
	}
	return m
}

// FluidLimit is the fluid-model lower bound on the time for n clients to
// each receive size bytes. curl clients share the origin's uplink u0 alone:
// n*F/u0. Peers that upload to each other: max(F/u0, n*F/(u0 + n*up),
// F/dmin); with peers' uplinks unshaped (up = 0 here) and downlinks
// unshaped, that is F/u0.
func FluidLimit(c Client, n int, size, u0, up int64) time.Duration {
	bits := float64(size) * 8
	sec := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	if c == Curl {
		return sec(float64(n) * bits / float64(u0))
	}
	t := bits / float64(u0)
	if up > 0 {
		t = math.Max(t, float64(n)*bits/(float64(u0)+float64(n)*float64(up)))
	}
	return sec(t)
}

// Run brings up a cluster, runs the configuration and tears it down.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Peers < 1 || cfg.Size < 0 || cfg.OriginRate <= 0 {
		return nil, fmt.Errorf("bad configuration: %d peers, %d bytes, origin %d bit/s", cfg.Peers, cfg.Size, cfg.OriginRate)
	}
	if cfg.Client != Curl && cfg.Client != Dfget {
		return nil, fmt.Errorf("unknown client %q", cfg.Client)
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c, err := cluster.New(ctx, cluster.Options{Mode: cfg.Mode, BaseDir: cfg.BaseDir})
	if err != nil {
		return nil, err
	}
	res, err := run(ctx, c, cfg, logf)
	if err != nil && ctx.Err() == nil {
		logPath := filepath.Join(os.TempDir(), filepath.Base(c.Dir())+"-failure.log")
		if f, ferr := os.Create(logPath); ferr == nil {
			c.DumpLogs(f, 64<<10)
			f.Close()
			err = fmt.Errorf("%w (logs in %s)", err, logPath)
		}
	}
	if cerr := c.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
	}
	return res, err
}

func run(ctx context.Context, c *cluster.Cluster, cfg Config, logf func(string, ...any)) (*Result, error) {
	res := &Result{
		Client: cfg.Client, Peers: cfg.Peers, Size: cfg.Size, OriginRate: cfg.OriginRate, PeerRate: cfg.PeerRate,
		Mode: c.Mode().String(), OriginWire: -1, PeerUpload: -1, SupernodeServed: -1,
		Fluid: FluidLimit(cfg.Client, cfg.Peers, cfg.Size, cfg.OriginRate, cfg.PeerRate),
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 3*FluidLimit(Curl, cfg.Peers, cfg.Size, cfg.OriginRate, 0) + time.Minute
	}
	oh, err := c.AddHost(ctx, cluster.HostSpec{Name: "origin", Uplink: cfg.OriginRate})
	if err != nil {
		return nil, err
	}
	origin, err := c.StartOrigin(ctx, oh)
	if err != nil {
		return nil, err
	}
	var sn *cluster.Supernode
	if cfg.Client == Dfget {
		res.SupernodeRate = cfg.SupernodeRate
		sh, err := c.AddHost(ctx, cluster.HostSpec{Name: "supernode", Uplink: cfg.SupernodeRate})
		if err != nil {
			return nil, err
		}
		if sn, err = c.StartSupernode(ctx, sh, cfg.SupernodeArgs...); err != nil {
			return nil, err
		}
	}
	peers := make([]*cluster.Host, cfg.Peers)
	for i := range peers {
		if peers[i], err = c.AddHost(ctx, cluster.HostSpec{Name: fmt.Sprintf("peer%d", i+1), Uplink: cfg.PeerRate}); err != nil {
			return nil, err
		}
	}
	name := fmt.Sprintf("%s-%dx%d-%d.bin", cfg.Client, cfg.Peers, cfg.Size, time.Now().UnixNano())
	url := origin.URL(name, cfg.Size)

	counters := func(h *cluster.Host) cluster.Counters {
		k, err := h.Counters()
		if err != nil {
			return cluster.Counters{Sent: -1, Received: -1}
		}
		return k
	}
	originBefore := counters(oh)
	before := make([]cluster.Counters, len(peers))
	for i, h := range peers {
		before[i] = counters(h)
	}

	sup := ""
	if sn != nil {
		sup = ", supernode " + FormatRate(cfg.SupernodeRate)
	}
	logf("%s: %d x %s, origin %s%s, %s mode", cfg.Client, cfg.Peers, FormatBytes(cfg.Size), FormatRate(cfg.OriginRate), sup, c.Mode())
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	outputs := make([]string, len(peers))
	procs := make([]*cluster.Proc, len(peers))
	start := time.Now()
	for i, h := range peers {
		outputs[i] = filepath.Join(h.Dir(), "download", name)
		if err := os.MkdirAll(filepath.Dir(outputs[i]), 0o755); err != nil {
			return nil, err
		}
		if cfg.Client == Curl {
			procs[i], err = h.StartCurl(dctx, url, outputs[i], timeout)
		} else {
			procs[i], err = h.StartDfget(dctx, cluster.Dfget{URL: url, Output: outputs[i], Nodes: []string{sn.Node()}, Extra: cfg.DfgetArgs})
		}
		if err != nil {
			return nil, err
		}
	}
	waitErrs := make([]error, len(procs))
	for i, p := range procs {
		waitErrs[i] = p.Wait()
	}
	res.Wall = time.Since(start)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}

	if k := counters(oh); k.Sent >= 0 {
		res.OriginWire = k.Sub(originBefore).Sent
	}
	if res.OriginBytes, err = origin.BytesServed(ctx, name, cfg.Size); err != nil {
		return nil, err
	}
	if sn != nil {
		if m, err := sn.Metrics(ctx); err == nil {
			if _, ok := m["dragonfly_supernode_pieces_downloaded_size_bytes_total"]; ok {
				res.SupernodeServed = int64(cluster.SumMetric(m, "dragonfly_supernode_pieces_downloaded_size_bytes_total"))
			}
		}
	}
	res.PeerResults = make([]Peer, len(peers))
	res.AllVerified = true
	var upload int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // verification is CPU-bound: one per core
	for i, h := range peers {
		k := counters(h)
		pr := Peer{Host: h.Name, IP: h.IP, Duration: procs[i].Duration(), MaxRSS: procs[i].MaxRSS(), Sent: -1, Received: -1}
		if k.Sent >= 0 {
			d := k.Sub(before[i])
			pr.Sent, pr.Received = d.Sent, d.Received
			upload += d.Sent
		}
		res.MaxRSS = max(res.MaxRSS, pr.MaxRSS)
		res.PeerResults[i] = pr
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p := &res.PeerResults[i]
			if waitErrs[i] != nil {
				p.Error = waitErrs[i].Error()
				return
			}
			if err := cluster.VerifyOutput(outputs[i], name, cfg.Size); err != nil {
				p.Error = err.Error()
				return
			}
			p.Verified = true
		}()
	}
	wg.Wait()
	if c.Mode() == cluster.ModeNetns {
		res.PeerUpload = upload
	}
	for i, p := range res.PeerResults {
		// Free the disk now: a benchmark runs many configurations.
		_ = os.Remove(outputs[i])
		if !p.Verified {
			res.AllVerified = false
			logf("  %s failed: %s", p.Host, firstLine(p.Error))
		}
	}
	return res, nil
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}

// FormatBytes prints a size in binary units.
func FormatBytes(n int64) string {
	switch {
	case n < 0:
		return "n/a"
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// FormatRate prints a rate in bits per second.
func FormatRate(bits int64) string {
	switch {
	case bits == 0:
		return "unshaped"
	case bits >= 1e9 && bits%1e9 == 0:
		return fmt.Sprintf("%d Gbit/s", bits/1e9)
	case bits >= 1e6:
		return fmt.Sprintf("%g Mbit/s", float64(bits)/1e6)
	default:
		return fmt.Sprintf("%d bit/s", bits)
	}
}
