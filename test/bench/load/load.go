// Package load drives a real supernode with many simulated dfget clients:
// goroutines that speak the v1 protocol (register, pull /peer/task, report
// /peer/piece/suc for each piece as if they had downloaded it) without
// moving any piece data. It measures the supernode's request rate, the
// latency of /peer/task and its peak memory (issue #6).
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
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/test/cluster"
)

// DefaultPieceContent is the content of a default 4 MiB piece (4 MiB less
// the 5 wrapper bytes); the file is Pieces of these.
const DefaultPieceContent = 4194299

// Config is one load run.
type Config struct {
	Clients int
	Pieces  int
	Mode    cluster.Mode
	BaseDir string
	// SupernodeArgs are extra supernode flags.
	SupernodeArgs []string
	// Timeout bounds the measured phase (the CDN warm-up has its own).
	Timeout time.Duration
	// PieceTime is a simulated download time per batch of pieces handed
	// out (0: report at once, the saturation test of issue #6).
	PieceTime time.Duration
	Logf      func(format string, args ...any)
}

// Result is what a run measured. Latencies are seen by the clients, so they
// include the client side of HTTP on the same 2 cores.
type Result struct {
	Clients   int   `json:"clients"`
	FileSize  int64 `json:"fileSizeBytes"`
	PieceSize int32 `json:"pieceSize"`
	// Pieces is the task's piece count as the supernode sized it.
	Pieces   int           `json:"pieces"`
	Mode     string        `json:"mode"`
	Duration time.Duration `json:"durationNs"`
	Requests int64         `json:"requests"`
	Failed   int64         `json:"failed"`
	// Aborted requests were cut short by the run's timeout or an interrupt.
	Aborted   int64 `json:"aborted"`
	Completed int   `json:"completed"`
	// RPS is Requests over Duration, all routes together.
	RPS       float64       `json:"rps"`
	TaskCalls int64         `json:"taskCalls"`
	TaskP50   time.Duration `json:"taskP50Ns"`
	TaskP99   time.Duration `json:"taskP99Ns"`
	TaskMax   time.Duration `json:"taskMaxNs"`
	SucP99    time.Duration `json:"sucP99Ns"`
	PieceTime time.Duration `json:"pieceTimeNs"`
	// Server-side figures from the supernode's own histograms over the
	// measured phase (bucket-interpolated, as histogram_quantile):
	// handler time of /peer/task and the scheduler's time per call.
	ServerTaskP50 string `json:"serverTaskP50"`
	ServerTaskP99 string `json:"serverTaskP99"`
	ScheduleP99   string `json:"scheduleP99"`
	// SupernodeRSS is the supernode's peak resident set (VmHWM) in bytes.
	SupernodeRSS int64  `json:"supernodePeakRssBytes"`
	FirstError   string `json:"firstError,omitempty"`
}

// Run starts an origin and a supernode, warms the task's CDN with one
// client, then runs Clients clients concurrently to completion.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clients < 1 || cfg.Pieces < 1 {
		return nil, fmt.Errorf("bad configuration: %d clients, %d pieces", cfg.Clients, cfg.Pieces)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c, err := cluster.New(ctx, cluster.Options{Mode: cfg.Mode, BaseDir: cfg.BaseDir})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	oh, err := c.AddHost(ctx, cluster.HostSpec{Name: "origin"})
	if err != nil {
		return nil, err
	}
	origin, err := c.StartOrigin(ctx, oh)
	if err != nil {
		return nil, err
	}
	sh, err := c.AddHost(ctx, cluster.HostSpec{Name: "supernode"})
	if err != nil {
		return nil, err
	}
	sn, err := c.StartSupernode(ctx, sh, cfg.SupernodeArgs...)
	if err != nil {
		return nil, err
	}
	size := int64(cfg.Pieces) * DefaultPieceContent
	d := &driver{
		base:   "http://" + sn.Node(),
		snIP:   sh.IP,
		selfIP: c.BridgeIP(),
		rawURL: origin.URL(fmt.Sprintf("load-%d.bin", time.Now().UnixNano()), size),
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: cfg.Clients + 16, MaxIdleConnsPerHost: cfg.Clients + 16, IdleConnTimeout: time.Minute,
		}},
	}
	res := &Result{Clients: cfg.Clients, FileSize: size, Mode: c.Mode().String(), PieceTime: cfg.PieceTime}
	d.pieceTime = cfg.PieceTime

	logf("load: warming the CDN with one client (%s file)", fmtBytes(size))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	warm := d.client(wctx, -1, nil)
	cancel()
	if warm.err != nil {
		return nil, fmt.Errorf("warm-up client: %w", warm.err)
	}
	res.PieceSize = warm.pieceSize
	res.Pieces = warm.pieces

	logf("load: %d clients, %d pieces of %d bytes", cfg.Clients, res.Pieces, res.PieceSize)
	mctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	mBefore, err := sn.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	outs := make([]clientResult, cfg.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	gate := make(chan struct{})
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = d.client(mctx, i, gate)
		}()
	}
	close(gate)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(15 * time.Second)
	for waiting := true; waiting; {
		select {
		case <-finished:
			waiting = false
		case <-tick.C:
			n := d.requests.Load()
			logf("load: %v: %d requests (%.0f/s), %d failed", time.Since(start).Round(time.Second), n,
				float64(n)/time.Since(start).Seconds(), d.failed.Load())
		}
	}
	tick.Stop()
	res.Duration = time.Since(start)

	var task, suc []time.Duration
	for _, o := range outs {
		task = append(task, o.task...)
		suc = append(suc, o.suc...)
		if o.err == nil {
			res.Completed++
		} else if res.FirstError == "" {
			res.FirstError = o.err.Error()
		}
	}
	res.Requests = d.requests.Load()
	res.Failed = d.failed.Load()
	res.Aborted = d.aborted.Load()
	res.RPS = float64(res.Requests) / res.Duration.Seconds()
	res.TaskCalls = int64(len(task))
	res.TaskP50, res.TaskP99, res.TaskMax = percentile(task, 50), percentile(task, 99), percentile(task, 100)
	res.SucP99 = percentile(suc, 99)
	if mAfter, err := sn.Metrics(ctx); err == nil {
		h := histogram(mAfter, mBefore, "dragonfly_supernode_http_request_duration_seconds", `handler="/peer/task"`)
		res.ServerTaskP50 = fmtQuantile(h, 0.5, time.Second)
		res.ServerTaskP99 = fmtQuantile(h, 0.99, time.Second)
		sh := histogram(mAfter, mBefore, "dragonfly_supernode_schedule_duration_milliseconds", "")
		res.ScheduleP99 = fmtQuantile(sh, 0.99, time.Millisecond)
	}
	if rss, err := sn.Proc.PeakRSS(); err == nil {
		res.SupernodeRSS = rss
	}
	return res, nil
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
	base, snIP, selfIP, rawURL string
	pieceTime                  time.Duration
	hc                         *http.Client
	requests, failed, aborted  atomic.Int64
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

type clientResult struct {
	task, suc []time.Duration
	pieceSize int32
	pieces    int
	err       error
}

// get sends one request and decodes the envelope; any transport error,
// non-200 status or undecodable body counts as a failed request.
func (d *driver) do(ctx context.Context, method, path string, body []byte, out any) error {
	d.requests.Add(1)
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, bytes.NewReader(body))
	if err != nil {
		d.fail(ctx)
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=utf-8")
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		d.fail(ctx)
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		d.fail(ctx)
		return fmt.Errorf("%s %s: status %d: %s (%v)", method, path, resp.StatusCode, bytes.TrimSpace(b), err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		d.fail(ctx)
		return fmt.Errorf("%s %s: %w: %s", method, path, err, b)
	}
	return nil
}

// client runs one simulated dfget to completion. id -1 is the warm-up
// client. It waits on gate (if any) after registering, so that the measured
// phase starts with every client registered.
func (d *driver) client(ctx context.Context, id int, gate <-chan struct{}) clientResult {
	var r clientResult
	cid := fmt.Sprintf("%s-load%d-%d", d.selfIP, id, time.Now().UnixNano())
	reg := types.RegisterRequest{
		SuperNodeIP: d.snIP, RawURL: d.rawURL, TaskURL: d.rawURL, CID: cid, IP: d.selfIP,
		HostName: "load" + strconv.Itoa(id), Port: 15000 + (id+1)%50000, Path: "/peer/file/load-" + cid, Version: "load",
	}
	body, _ := json.Marshal(reg)
	var env struct {
		Code int             `json:"code"`
		Msg  string          `json:"msg"`
		Data json.RawMessage `json:"data"`
	}
	if r.err = d.do(ctx, http.MethodPost, "/peer/registry", body, &env); r.err != nil {
		return r
	}
	var rd types.RegisterResponseData
	if env.Code != types.CodeSuccess || json.Unmarshal(env.Data, &rd) != nil || rd.TaskID == "" {
		d.fail(ctx)
		r.err = fmt.Errorf("register: code %d msg %q data %s", env.Code, env.Msg, env.Data)
		return r
	}
	r.pieceSize = rd.PieceSize
	if rd.PieceSize > 5 && rd.FileLength >= 0 {
		content := int64(rd.PieceSize) - 5
		r.pieces = int((rd.FileLength + content - 1) / content)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			r.err = ctx.Err()
			return r
		}
	}
	q := url.Values{"taskId": {rd.TaskID}, "srcCid": {cid}, "dstCid": {""}, "range": {""},
		"status": {strconv.Itoa(types.TaskStatusStart)}, "result": {strconv.Itoa(types.ResultInvalid)}}
	waitLo := 50 * time.Millisecond
	// Each round gets at most a few pieces; a client needing more rounds
	// than 20x the piece count is stuck.
	for round := 0; round < 20*max(r.pieces, 1)+1000; round++ {
		t0 := time.Now()
		err := d.do(ctx, http.MethodGet, "/peer/task?"+q.Encode(), nil, &env)
		r.task = append(r.task, time.Since(t0))
		if err != nil {
			r.err = err
			return r
		}
		empty := env.Code == types.CodePeerContinue && (len(env.Data) == 0 || string(env.Data) == "null" || string(env.Data) == "[]")
		switch {
		case env.Code == types.CodePeerFinish:
			return r
		case env.Code == types.CodePeerWait || empty:
			// 601 without pieces: the client has its limit in flight.
			// dfget's backoff: random [lo, 2lo), doubling up to 800 ms.
			select {
			case <-time.After(waitLo + rand.N(waitLo)):
			case <-ctx.Done():
				r.err = ctx.Err()
				return r
			}
			waitLo = min(2*waitLo, 800*time.Millisecond)
			continue
		case env.Code == types.CodePeerContinue:
		default:
			d.fail(ctx)
			r.err = fmt.Errorf("/peer/task: code %d msg %q", env.Code, env.Msg)
			return r
		}
		waitLo = 50 * time.Millisecond
		var pieces []types.PieceInfo
		if err := json.Unmarshal(env.Data, &pieces); err != nil {
			d.fail(ctx)
			r.err = fmt.Errorf("/peer/task pieces: %w", err)
			return r
		}
		if d.pieceTime > 0 && len(pieces) > 0 {
			select {
			case <-time.After(d.pieceTime):
			case <-ctx.Done():
				r.err = ctx.Err()
				return r
			}
		}
		for _, p := range pieces {
			sq := url.Values{"taskId": {rd.TaskID}, "cid": {cid}, "dstCid": {p.CID}, "pieceRange": {p.Range}}
			t1 := time.Now()
			err := d.do(ctx, http.MethodGet, "/peer/piece/suc?"+sq.Encode(), nil, &env)
			r.suc = append(r.suc, time.Since(t1))
			if err == nil && env.Code != types.CodeGetPieceReport {
				d.fail(ctx)
				err = fmt.Errorf("/peer/piece/suc: code %d msg %q", env.Code, env.Msg)
			}
			if err != nil {
				r.err = err
				return r
			}
		}
		q.Set("status", strconv.Itoa(types.TaskStatusRunning))
		if len(pieces) > 0 {
			last := pieces[len(pieces)-1]
			q.Set("result", strconv.Itoa(types.ResultSemiSuc))
			q.Set("dstCid", last.CID)
			q.Set("range", last.Range)
		}
	}
	r.err = errors.New("client did not finish within its round limit")
	return r
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
