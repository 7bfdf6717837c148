package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

type clientResult struct {
	task, held, suc []time.Duration
	steady          []time.Duration // task, for calls sent after steadyAfter
	reg             time.Duration
	pieceSize       int32
	pieces          int
	err             error
}

// do sends one request on the client's connections and decodes the
// envelope; any transport error, non-200 status or undecodable body counts
// as a failed request. held says the supernode marked the answer as a
// long-poll hold (Server-Timing: hold).
func (d *driver) do(ctx context.Context, p *pool, method, target string, body []byte, out *api.Envelope) (held bool, err error) {
	d.requests.Add(1)
	err = p.roundTrip(ctx, method, target, body, func(r response) error {
		if r.status != http.StatusOK {
			return fmt.Errorf("%s %s: status %d: %s", method, target, r.status, bytes.TrimSpace(r.body))
		}
		*out = api.Envelope{}
		if err := json.Unmarshal(r.body, out); err != nil {
			return fmt.Errorf("%s %s: %w: %s", method, target, err, r.body)
		}
		held = r.held
		return nil
	})
	if err != nil {
		d.fail(ctx)
		return false, err
	}
	return held, nil
}

// client runs one simulated dfget until it has every piece (nil), the
// window ends (errStopped) or something fails. It registers, then runs
// dfget's own pull loop (downloader.PullLoop) with a simulated fetch.
func (d *driver) client(ctx context.Context, id int) clientResult {
	var r clientResult
	cid := fmt.Sprintf("%s-load%d-%d", d.selfIP, id, time.Now().UnixNano())
	reg := types.RegisterRequest{
		SuperNodeIP: d.snIP, RawURL: d.rawURL, TaskURL: d.rawURL, CID: cid, IP: d.selfIP,
		HostName: "load" + strconv.Itoa(id), Port: 15000 + (id+1)%50000, Path: "/peer/file/load-" + cid, Version: "load",
	}
	body, _ := json.Marshal(reg)
	p := &pool{addr: d.addr, host: d.addr, dials: &d.dials}
	defer p.closeAll()
	var env api.Envelope
	t0 := time.Now()
	_, r.err = d.do(ctx, p, http.MethodPost, "/peer/registry", body, &env)
	r.reg = time.Since(t0)
	if r.err != nil {
		return r
	}
	var rd types.RegisterResponseData
	if env.Code != types.CodeSuccess || json.Unmarshal(env.Data, &rd) != nil || rd.TaskID == "" {
		d.fail(ctx)
		r.err = fmt.Errorf("register: code %d msg %q data %s", env.Code, env.Msg, env.Data)
		return r
	}
	r.pieceSize = rd.PieceSize
	if rd.PieceSize > 0 && rd.FileLength >= 0 {
		r.pieces = int((rd.FileLength + int64(rd.PieceSize) - 1) / int64(rd.PieceSize))
	}

	r.err = d.pull(ctx, p, cid, rd.TaskID, &r)
	return r
}

// pull runs the pull loop of client (which see) until the supernode
// answers 600 or the window ends; r collects latencies.
func (d *driver) pull(ctx context.Context, p *pool, cid, taskID string, r *clientResult) error {
	// The window stops the loop between requests: the loop's context ends
	// with it, while the requests run on ctx (node), so one already sent
	// completes as it would in a real client.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-lctx.Done():
		}
	}()
	loop := &downloader.PullLoop{Supernode: &node{d: d, p: p, run: ctx, r: r},
		Task: downloader.Task{Node: d.addr, TaskID: taskID, CID: cid, PieceSize: r.pieceSize}, Fetch: d.simulate}
	_, err := loop.Run(lctx)
	if err != nil && errors.Is(err, context.Canceled) && d.stopped() && ctx.Err() == nil {
		return errStopped
	}
	return err
}

// simulate is the simulated piece download (a downloader.FetchFunc): no
// bytes move; it takes the time the piece would at the run's rate.
func (d *driver) simulate(ctx context.Context, pi types.PieceInfo, _ func()) (bool, error) {
	s, e, err := piece.ParseRange(pi.Range)
	if err != nil {
		d.fail(ctx)
		return false, nil
	}
	if err := sleep(ctx, d.rate.time(e-s+1)); err != nil {
		return false, nil
	}
	return true, nil
}

// sleep waits for dt or until ctx ends, whose error it returns.
func sleep(ctx context.Context, dt time.Duration) error {
	if dt <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(dt)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// node is one simulated client's side of the supernode's API as the pull
// loop sees it (downloader.Supernode): requests go out on the client's own
// connections, with the query bytes dfget's api.Client writes, and each is
// timed for the result. A request is not sent once the loop's context has
// ended (the window); one sent runs on the run's context, which only an
// interrupt or the hard deadline cuts short.
type node struct {
	d   *driver
	p   *pool
	run context.Context
	mu  sync.Mutex // guards r.suc, written by the fetch goroutines
	r   *clientResult
}

// PullPieceTask implements downloader.Supernode.
func (n *node) PullPieceTask(ctx context.Context, _ string, req api.PullRequest) (*api.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The query as url.Values.Encode writes it (keys sorted).
	target := query("/peer/task?", "dstCid", req.DstCID, "range", req.Range, "result", strconv.Itoa(req.Result),
		"srcCid", req.SrcCID, "status", strconv.Itoa(req.Status), "taskId", req.TaskID)
	env := &api.Envelope{}
	t0 := time.Now()
	held, err := n.d.do(n.run, n.p, http.MethodGet, target, nil, env)
	if dt := time.Since(t0); held {
		n.r.held = append(n.r.held, dt)
	} else {
		n.r.task = append(n.r.task, dt)
		if t0.After(n.d.steadyFrom) {
			n.r.steady = append(n.r.steady, dt)
		}
	}
	if err != nil {
		return nil, err
	}
	switch env.Code {
	case types.CodePeerContinue, types.CodeSuccess, types.CodePeerWait, types.CodePeerLimited, types.CodePeerFinish:
	default:
		// A code the loop does not take ends the client: a failed request.
		n.d.fail(n.run)
	}
	return env, nil
}

// ReportPieceSuccess implements downloader.Supernode.
func (n *node) ReportPieceSuccess(ctx context.Context, _ string, taskID, cid, dstCID, pieceRange string, share bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	target := query("/peer/piece/suc?", "cid", cid, "dstCid", dstCID, "pieceRange", pieceRange, "taskId", taskID)
	if !share {
		target += "&share=0"
	}
	var env api.Envelope
	t0 := time.Now()
	_, err := n.d.do(n.run, n.p, http.MethodGet, target, nil, &env)
	n.mu.Lock()
	n.r.suc = append(n.r.suc, time.Since(t0))
	n.mu.Unlock()
	if err == nil && env.Code != types.CodeGetPieceReport {
		n.d.fail(n.run)
		err = fmt.Errorf("/peer/piece/suc: code %d msg %q", env.Code, env.Msg)
	}
	if err == nil {
		n.d.pieces.Add(1)
	}
	return err
}

// query appends kv (key, value pairs) to prefix as a query string.
func query(prefix string, kv ...string) string {
	n := len(prefix)
	for _, s := range kv {
		n += len(s) + 1
	}
	b := make([]byte, 0, n+16)
	b = append(b, prefix...)
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, url.QueryEscape(kv[i])...)
		b = append(b, '=')
		b = append(b, url.QueryEscape(kv[i+1])...)
	}
	return string(b)
}
