package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// requestTimeout bounds one request, as the http.Client timeout did before.
const requestTimeout = 30 * time.Second

// maxBody caps a response body; a longer one is a failed request.
const maxBody = 1 << 20

// httpConn is one keep-alive HTTP/1.1 connection to the supernode.
type httpConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	body bytes.Buffer // the last response body, reused
	// stop unregisters the context watch that aborts the connection's
	// in-flight request when the run is interrupted.
	stop func() bool
}

func (c *httpConn) close() {
	c.stop()
	_ = c.c.Close()
}

// pool is one simulated client's connections: like a dfget process, each
// client has its own. The pull loop is sequential; piece reports run
// concurrently, so the pool grows to the client's concurrency and keeps
// that many idle for reuse.
//
// It replaces net/http.Transport in the load generator (the way wrk or
// hey write requests by hand): the Transport's two goroutines per
// connection, its selects, per-request contexts and allocations cost the
// simulated clients about as much CPU as the supernode spent answering
// them, on the same 2 cores, so the measured tail was partly the load
// generator's own.
type pool struct {
	addr, host string
	// dials, when set, counts the connections opened.
	dials *atomic.Int64
	mu    sync.Mutex
	idle  []*httpConn
}

// maxIdle is the idle connections a client keeps. A pull can hand out new
// pieces while the reports of the last ones are still in flight, so a
// client's concurrency passes its running limit (4) plus the pull loop's
// connection; closing what was above 5 made the saturation run open ~200
// connections a second, and the dials cost the supernode more than the
// requests they carried.
const maxIdle = 16

func (p *pool) get(ctx context.Context) (*httpConn, bool, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(dctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	if p.dials != nil {
		p.dials.Add(1)
	}
	c := &httpConn{c: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 2048)}
	// An interrupt or the run's hard deadline aborts a request in flight
	// (the per-request deadline alone would let it run its 30 s).
	c.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	return c, false, nil
}

func (p *pool) put(c *httpConn) {
	p.mu.Lock()
	if len(p.idle) < maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// closeAll closes the idle connections (the client is done).
func (p *pool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// response is what the caller needs of one answer: the body is only valid
// until the connection's next request, so callers decode it inside fn.
type response struct {
	status int
	held   bool // Server-Timing: hold (a long-poll answer)
	body   []byte
}

// roundTrip sends one request (body, when not nil, is JSON) and reads the
// whole answer, calling fn with it before the connection is reused. A
// reused connection that the server had closed while it was idle (nothing
// read back) is retried once on a new one, as net/http.Transport does for
// idempotent requests; every other error is the request's.
func (p *pool) roundTrip(ctx context.Context, method, target string, body []byte, fn func(response) error) error {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(ctx)
		if err != nil {
			return err
		}
		keep, stale, err := c.exchange(ctx, p.host, method, target, body, fn)
		switch {
		case err == nil && keep:
			p.put(c)
			return nil
		case err == nil:
			c.close()
			return nil
		}
		c.close()
		if !reused || !stale || attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

// exchange writes one request and reads its response on c. keep says the
// connection can carry another request; stale says it failed before the
// server sent a byte (closed while idle).
func (c *httpConn) exchange(ctx context.Context, host, method, target string, body []byte, fn func(response) error) (keep, stale bool, err error) {
	deadline := time.Now().Add(requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.c.SetDeadline(deadline); err != nil {
		return false, false, err
	}
	// After the deadline is set: an interrupt that came before would be
	// overwritten by it.
	if err := ctx.Err(); err != nil {
		return false, false, err
	}
	w := c.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(target)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\nUser-Agent: damselfly-load\r\n")
	if body != nil {
		w.WriteString("Content-Type: application/json;charset=utf-8\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return false, isStale(err), fmt.Errorf("%s %s: %w", method, target, err)
	}
	// Nothing read back at all tells a connection the server had closed.
	if _, err := c.br.Peek(1); err != nil {
		return false, isStale(err), fmt.Errorf("%s %s: %w", method, target, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return false, false, fmt.Errorf("%s %s: %w", method, target, err)
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(io.LimitReader(resp.Body, maxBody+1))
	if err == nil && c.body.Len() > maxBody {
		err = fmt.Errorf("body over %d bytes", maxBody)
	}
	if err != nil {
		return false, false, fmt.Errorf("%s %s: status %d: reading body: %w", method, target, resp.StatusCode, err)
	}
	if err := fn(response{status: resp.StatusCode, held: isHold(resp.Header), body: c.body.Bytes()}); err != nil {
		// The answer was read whole: the connection is still good.
		return !resp.Close, false, err
	}
	return !resp.Close, false, nil
}

func isHold(h http.Header) bool {
	v := h["Server-Timing"]
	return len(v) > 0 && len(v[0]) >= 4 && v[0][:4] == "hold"
}

// isStale reports an error that means the server closed the connection
// before answering: end of stream with nothing read, or a reset or broken
// pipe.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
