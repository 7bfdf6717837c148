// Package load drives a real supernode with many simulated dfget clients:
// goroutines that register and run dfget's own pull loop
// (downloader.PullLoop: pull /peer/task, "download" each piece handed out
// for a simulated time, report /peer/piece/suc, pull again) without moving
// any piece data. It measures the supernode's request rate, the latency of
// /peer/task (answers the supernode held as a long-poll apart from the
// others), its CPU time and its peak memory.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/test/cluster"
)

// PieceSize is the piece size the supernode picks for the benchmark file
// (the v1 rule's maximum, 15 MiB); the file is Pieces x (PieceSize - 5)
// bytes, which makes exactly Pieces pieces.
const PieceSize = 15 << 20

// Rate is the simulated download rate of one piece, drawn uniformly from
// [Lo, Hi] bytes/s for each piece; the zero Rate downloads instantly (the
// saturation run).
type Rate struct {
	Lo, Hi int64
}

func (r Rate) String() string {
	if r.Lo <= 0 {
		return "0 (saturation)"
	}
	if r.Hi <= r.Lo {
		return fmt.Sprintf("%d MB/s", r.Lo/1e6)
	}
	return fmt.Sprintf("%d-%d MB/s", r.Lo/1e6, r.Hi/1e6)
}

// ParseRate parses "0", "200" or "100-400" (MB/s, 10^6 bytes).
func ParseRate(s string) (Rate, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		hi = lo
	}
	l, err1 := strconv.ParseInt(lo, 10, 64)
	h, err2 := strconv.ParseInt(hi, 10, 64)
	if err1 != nil || err2 != nil || l < 0 || h < l {
		return Rate{}, fmt.Errorf("rate %q: want MB/s as N or LO-HI", s)
	}
	return Rate{Lo: l * 1e6, Hi: h * 1e6}, nil
}

// time is how long a piece of n bytes takes at a rate drawn from r.
func (r Rate) time(n int64) time.Duration {
	if r.Lo <= 0 {
		return 0
	}
	bps := r.Lo
	if r.Hi > r.Lo {
		bps += rand.Int64N(r.Hi - r.Lo + 1)
	}
	return time.Duration(float64(n) / float64(bps) * float64(time.Second))
}

// Config is one load run.
type Config struct {
	Clients int
	Pieces  int
	Mode    cluster.Mode
	BaseDir string
	// SupernodeArgs are extra supernode flags.
	SupernodeArgs []string
	// Rate is the simulated per-piece download rate.
	Rate Rate
	// Window bounds the measured phase: clients stop (between requests)
	// when it ends, finished or not. 0 means 60 s.
	Window time.Duration
	// ProfileDir, when set, receives a CPU profile of the supernode taken
	// over the middle of the window (the supernode runs with --profiler).
	ProfileDir string
	Logf       func(format string, args ...any)
}

// fileSize makes exactly Pieces pieces of PieceSize.
func (cfg Config) fileSize() int64 { return int64(cfg.Pieces) * piece.ContentSize(PieceSize) }

// Result is what a run measured. Latencies are seen by the clients, so they
// include the client side of HTTP on the same 2 cores.
type Result struct {
	Clients   int   `json:"clients"`
	FileSize  int64 `json:"fileSizeBytes"`
	PieceSize int32 `json:"pieceSize"`
	// Pieces is the task's piece count as the supernode sized it.
	Pieces   int           `json:"pieces"`
	Mode     string        `json:"mode"`
	Rate     Rate          `json:"rate"`
	Duration time.Duration `json:"durationNs"`
	Requests int64         `json:"requests"`
	Failed   int64         `json:"failed"`
	// Aborted requests were cut short by the hard deadline or an interrupt
	// (the window itself stops clients between requests).
	Aborted int64 `json:"aborted"`
	// Completed clients got every piece and code 600; Stopped ones were
	// still downloading when the window ended; the rest failed.
	Completed int `json:"completed"`
	Stopped   int `json:"stopped"`
	// PiecesDone is the number of pieces reported by all clients.
	PiecesDone int64 `json:"piecesDone"`
	// Connections is the number of connections the clients opened (each
	// client keeps its own alive; more than a few per client is churn).
	Connections int64 `json:"connections"`
	// RPS is Requests over Duration, all routes together.
	RPS       float64 `json:"rps"`
	TaskCalls int64   `json:"taskCalls"`
	// TaskP50/P99/Max are over the /peer/task answers the supernode did
	// not hold (the checked figure); Held* over the ones it held as a
	// long-poll because nothing was available yet (intentional waiting).
	TaskP50 time.Duration `json:"taskP50Ns"`
	TaskP99 time.Duration `json:"taskP99Ns"`
	TaskMax time.Duration `json:"taskMaxNs"`
	// SteadyP99 is TaskP99 over the calls sent after the first
	// steadyAfter of the window (the simultaneous start excluded).
	SteadyP99 time.Duration `json:"steadyP99Ns"`
	HeldCall  int64         `json:"heldCalls"`
	HeldP50   time.Duration `json:"heldP50Ns"`
	HeldP99   time.Duration `json:"heldP99Ns"`
	SucP99    time.Duration `json:"sucP99Ns"`
	RegP99    time.Duration `json:"registerP99Ns"`
	// Server-side figures from the supernode's own histograms over the
	// measured phase (bucket-interpolated, as histogram_quantile):
	// handler time of /peer/task and the scheduler's time per call.
	ServerTaskP50 string `json:"serverTaskP50"`
	ServerTaskP99 string `json:"serverTaskP99"`
	ScheduleP99   string `json:"scheduleP99"`
	// SupernodeCPU is the supernode's CPU time (user+system) over the
	// measured phase.
	SupernodeCPU time.Duration `json:"supernodeCpuNs"`
	// ClientCPU is the CPU time of this process (the simulated clients),
	// which shares the machine's cores with the supernode.
	ClientCPU time.Duration `json:"clientCpuNs"`
	// SupernodeRSS is the supernode's peak resident set (VmHWM) in bytes.
	SupernodeRSS int64  `json:"supernodePeakRssBytes"`
	FirstError   string `json:"firstError,omitempty"`
}

// HeldShare is the fraction of /peer/task answers that were long-poll holds.
func (r *Result) HeldShare() float64 {
	if r.TaskCalls == 0 {
		return 0
	}
	return float64(r.HeldCall) / float64(r.TaskCalls)
}

// Run starts an origin and a supernode in the source CDN pattern (pieces
// are ranges of the origin, nothing is copied), then runs Clients clients
// concurrently on one task of Pieces pieces until they finish or the
// window ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clients < 1 || cfg.Pieces < 1 {
		return nil, fmt.Errorf("bad configuration: %d clients, %d pieces", cfg.Clients, cfg.Pieces)
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c, err := cluster.New(ctx, cluster.Options{Mode: cfg.Mode, BaseDir: cfg.BaseDir})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sn, d, err := start(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	res := &Result{Clients: cfg.Clients, FileSize: cfg.fileSize(), Mode: c.Mode().String(), Rate: cfg.Rate}
	cfg.Logf("load: %d clients, %s file, piece rate %v, window %v", cfg.Clients, fmtBytes(res.FileSize), cfg.Rate, cfg.Window)
	// In the source pattern the supernode reads the whole file once to learn
	// its piece digests before it offers the pieces; that read is not what
	// this section measures, so it runs before the window.
	if err := d.warm(ctx, cfg.Logf); err != nil {
		return nil, err
	}
	// The hard deadline only guards against a hung supernode: the window
	// stops clients between requests, so a healthy run never reaches it.
	hctx, cancel := context.WithTimeout(ctx, cfg.Window+time.Minute)
	defer cancel()
	mBefore, err := sn.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	// The simulated clients allocate per request (~15 MB/s at 5-10 MB/s a
	// piece); each collection of theirs stalls the goroutines that time
	// the calls, which showed as bursts of slow /peer/task answers. A load
	// generator need not collect while it measures: the collector is off
	// for the window and runs only if the heap reaches loadHeapLimit
	// (a saturation run may, a paced one does not). The supernode is not
	// affected by this setting (it runs with its own defaults).
	runtime.GC()
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(loadHeapLimit))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	cpuBefore, _ := cpuTime(sn.Proc.Pid())
	selfBefore, _ := cpuTime(os.Getpid())
	outs := d.window(hctx, cfg)
	res.Duration = time.Since(d.start)
	cfg.Logf("load: %d connections opened by %d clients", d.dials.Load(), cfg.Clients)
	if cpuAfter, err := cpuTime(sn.Proc.Pid()); err == nil {
		res.SupernodeCPU = cpuAfter - cpuBefore
	}
	if selfAfter, err := cpuTime(os.Getpid()); err == nil {
		res.ClientCPU = selfAfter - selfBefore
	}
	res.add(outs)
	res.Requests = d.requests.Load()
	res.Failed = d.failed.Load()
	res.Aborted = d.aborted.Load()
	res.PiecesDone = d.pieces.Load()
	res.Connections = d.dials.Load()
	res.RPS = float64(res.Requests) / res.Duration.Seconds()
	if mAfter, err := sn.Metrics(ctx); err == nil {
		res.serverFigures(mAfter, mBefore)
	}
	if rss, err := sn.Proc.PeakRSS(); err == nil {
		res.SupernodeRSS = rss
	}
	return res, nil
}

// start starts the origin and the supernode on their hosts and returns the
// supernode and the driver of the clients.
func start(ctx context.Context, c *cluster.Cluster, cfg Config) (*cluster.Supernode, *driver, error) {
	oh, err := c.AddHost(ctx, cluster.HostSpec{Name: "origin"})
	if err != nil {
		return nil, nil, err
	}
	origin, err := c.StartOrigin(ctx, oh)
	if err != nil {
		return nil, nil, err
	}
	sh, err := c.AddHost(ctx, cluster.HostSpec{Name: "supernode"})
	if err != nil {
		return nil, nil, err
	}
	args := append([]string{"--cdn-pattern", "source"}, cfg.SupernodeArgs...)
	if cfg.ProfileDir != "" {
		args = append(args, "--profiler")
	}
	sn, err := c.StartSupernode(ctx, sh, args...)
	if err != nil {
		return nil, nil, err
	}
	d := &driver{
		addr:   sn.Node(),
		snIP:   sh.IP,
		selfIP: c.BridgeIP(),
		rawURL: origin.URL(fmt.Sprintf("load-%d.bin", time.Now().UnixNano()), cfg.fileSize()),
		rate:   cfg.Rate,
		stop:   make(chan struct{}),
	}
	return sn, d, nil
}

// window runs the clients at once until they all end or the window does,
// logging progress, and returns what each measured.
func (d *driver) window(ctx context.Context, cfg Config) []clientResult {
	outs := make([]clientResult, cfg.Clients)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			outs[i] = d.client(ctx, i)
		}()
	}
	d.start = time.Now()
	d.steadyFrom = d.start.Add(steadyAfter)
	close(gate)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	window := time.NewTimer(cfg.Window)
	defer window.Stop()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	if cfg.ProfileDir != "" {
		go profile(ctx, "http://"+d.addr, cfg.ProfileDir, cfg.Rate, cfg.Window, cfg.Logf)
	}
	for {
		select {
		case <-finished:
			return outs
		case <-window.C:
			close(d.stop)
			<-finished
			return outs
		case <-tick.C:
			n, since := d.requests.Load(), time.Since(d.start)
			cfg.Logf("load: %v: %d requests (%.0f/s), %d pieces, %d failed, %d connections opened", since.Round(time.Second), n,
				float64(n)/since.Seconds(), d.pieces.Load(), d.failed.Load(), d.dials.Load())
		}
	}
}

// add sums the clients' outcomes and latencies into r.
func (r *Result) add(outs []clientResult) {
	var task, steady, held, suc, reg []time.Duration
	for _, o := range outs {
		task = append(task, o.task...)
		steady = append(steady, o.steady...)
		held = append(held, o.held...)
		suc = append(suc, o.suc...)
		reg = append(reg, o.reg)
		switch {
		case o.err == nil:
			r.Completed++
		case errors.Is(o.err, errStopped):
			r.Stopped++
		case r.FirstError == "":
			r.FirstError = o.err.Error()
		}
		if o.pieces > 0 {
			r.Pieces, r.PieceSize = o.pieces, o.pieceSize
		}
	}
	r.TaskCalls = int64(len(task) + len(held))
	r.HeldCall = int64(len(held))
	r.TaskP50, r.TaskP99, r.TaskMax = percentile(task, 50), percentile(task, 99), percentile(task, 100)
	r.SteadyP99 = percentile(steady, 99)
	r.HeldP50, r.HeldP99 = percentile(held, 50), percentile(held, 99)
	r.SucP99 = percentile(suc, 99)
	r.RegP99 = percentile(reg, 99)
}

// serverFigures fills the supernode's own figures over the window from
// its metrics before and after.
func (r *Result) serverFigures(after, before map[string]float64) {
	h := histogram(after, before, "dragonfly_supernode_http_request_duration_seconds", `handler="/peer/task"`)
	r.ServerTaskP50 = fmtQuantile(h, 0.5, time.Second)
	r.ServerTaskP99 = fmtQuantile(h, 0.99, time.Second)
	sh := histogram(after, before, "dragonfly_supernode_schedule_duration_milliseconds", "")
	r.ScheduleP99 = fmtQuantile(sh, 0.99, time.Millisecond)
}

// profile saves a 10 s CPU profile and the allocations over the same
// 10 s of the supernode, from the middle of the window.
func profile(ctx context.Context, base, dir string, r Rate, window time.Duration, logf func(string, ...any)) {
	secs := min(10, int(window/time.Second)/2)
	select {
	case <-time.After((window - time.Duration(secs)*time.Second) / 2):
	case <-ctx.Done():
		return
	}
	// The clients' own CPU profile over the same seconds.
	if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("clients-%d-%d.pprof", r.Lo/1e6, time.Now().Unix()))); err == nil {
		if pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		} else {
			f.Close()
		}
	}
	var wg sync.WaitGroup
	for _, kind := range []string{"profile", "allocs"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := filepath.Join(dir, fmt.Sprintf("supernode-%s-%d-%d.pprof", kind, r.Lo/1e6, time.Now().Unix()))
			if err := fetch(ctx, fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", base, kind, secs), name); err != nil {
				logf("load: %s: %v", kind, err)
				return
			}
			logf("load: %s in %s", kind, name)
		}()
	}
	wg.Wait()
}

func fetch(ctx context.Context, url, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// cpuTime is a process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad stat times")
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// percentile is the p-th percentile (nearest rank) of d, which it sorts.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := (len(d)*p + 99) / 100
	return d[max(0, min(len(d)-1, i-1))]
}

type driver struct {
	// addr is the supernode's API address (host:port).
	addr, snIP, selfIP, rawURL string
	rate                       Rate
	// start is when the window began; steadyFrom is steadyAfter later.
	start, steadyFrom time.Time
	// stop ends the window: clients stop between requests.
	stop                              chan struct{}
	requests, failed, aborted, pieces atomic.Int64
	dials                             atomic.Int64 // connections opened
}

// loadHeapLimit is the bench process's heap size that makes it collect
// while the clients run (see Run).
const loadHeapLimit = 2 << 30

// steadyAfter is when the start burst (every client registering and
// pulling at once) is over, for the steady-state figure.
const steadyAfter = 5 * time.Second

// errStopped ends a client that the window stopped.
var errStopped = errors.New("stopped by the end of the window")

func (d *driver) stopped() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}

// fail counts a failed request, or an aborted one when the run's own
// deadline or interrupt cut it short.
func (d *driver) fail(ctx context.Context) {
	if ctx.Err() != nil {
		d.aborted.Add(1)
		return
	}
	d.failed.Add(1)
}

// fmtQuantile prints a histogram quantile in unit, or where it lies
// when it is past the last finite bucket.
func fmtQuantile(bs []bucket, q float64, unit time.Duration) string {
	v := quantile(bs, q)
	switch {
	case math.IsNaN(v):
		return "n/a"
	case math.IsInf(v, 1):
		last := 0.0
		for _, b := range bs {
			if !math.IsInf(b.le, 1) {
				last = b.le
			}
		}
		return "> " + time.Duration(last*float64(unit)).String()
	case v <= bs[0].le:
		// Interpolating inside the first bucket would invent precision.
		return "<= " + time.Duration(bs[0].le*float64(unit)).String()
	}
	return time.Duration(v * float64(unit)).Round(time.Microsecond).String()
}

func fmtBytes(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// warm registers one client to start the task and waits until the
// supernode has every piece digest (cdnStatus SUCCESS).
func (d *driver) warm(ctx context.Context, logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 10 * time.Second}
	cid := fmt.Sprintf("%s-warm-%d", d.selfIP, time.Now().UnixNano())
	body, _ := json.Marshal(types.RegisterRequest{
		SuperNodeIP: d.snIP, RawURL: d.rawURL, TaskURL: d.rawURL, CID: cid, IP: d.selfIP,
		HostName: "warm", Port: 14999, Path: "/peer/file/warm-" + cid, Version: "load",
	})
	var env api.Envelope
	if err := httpJSON(ctx, hc, http.MethodPost, "http://"+d.addr+"/peer/registry", body, &env); err != nil {
		return fmt.Errorf("warm-up register: %w", err)
	}
	var rd types.RegisterResponseData
	if env.Code != types.CodeSuccess || json.Unmarshal(env.Data, &rd) != nil || rd.TaskID == "" {
		return fmt.Errorf("warm-up register: code %d msg %q", env.Code, env.Msg)
	}
	t0 := time.Now()
	for {
		var info types.TaskInfo
		if err := httpJSON(ctx, hc, http.MethodGet, "http://"+d.addr+"/api/v1/tasks/"+rd.TaskID, nil, &info); err != nil {
			return fmt.Errorf("warm-up task status: %w", err)
		}
		switch info.CdnStatus {
		case types.CDNStatusSuccess:
			logf("load: the supernode had every piece digest after %v", time.Since(t0).Round(time.Millisecond))
			return nil
		case types.CDNStatusFailed, types.CDNStatusSourceError:
			return fmt.Errorf("warm-up: cdn status %s", info.CdnStatus)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("warm-up: cdn status %s: %w", info.CdnStatus, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// httpJSON sends one request and decodes a 200 answer's JSON into out.
func httpJSON(ctx context.Context, hc *http.Client, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}
