package swarm

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/httpidle/httpidletest"
)

// stalledClient sends raw, an HTTP request, to addr and then never reads
// the answer, with a small receive buffer so the server's writes block
// soon.
func stalledClient(t *testing.T, addr, raw string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// countingServer serves h, counting the requests in it; it closes with
// the test.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	running := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, running
}

// A client that sends a blob GET and then reads nothing must not pin the
// stream (its window, the source connection, the handler): after
// WriteIdle without progress it is a client gone.
func TestServeGETDropsClientThatStopsReading(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB: far more than the socket buffers
	var auth atomic.Value
	origin := blobOrigin(t, body, &auth)
	s := newTestSwarm(t)
	s.opt.WriteIdle = time.Second
	srv := serve(t, s, origin.URL+"/v2/x/blobs/"+sum(body), Identity{Digest: sum(body)})
	stalledClient(t, srv.Listener.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !waitFor(3*time.Second, func() bool { return value(s.m.InFlight) == 1 }) {
		t.Fatal("the stream never started")
	}
	if !waitFor(15*time.Second, func() bool { return value(s.m.InFlight) == 0 }) {
		t.Fatalf("15 s after a client stopped reading (write idle 1 s), %v stream(s) still in flight", value(s.m.InFlight))
	}
	if n := value(s.m.Streams.WithLabelValues("client_gone")); n != 1 {
		t.Fatalf("%v streams ended as client_gone, want 1", n)
	}
}

// The same for a forwarded request (a Range GET).
func TestForwardDropsClientThatStopsReading(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4<<20)
	var auth atomic.Value
	origin := blobOrigin(t, body, &auth)
	s := newTestSwarm(t)
	s.opt.WriteIdle = time.Second
	u, _ := url.Parse(origin.URL + "/blob")
	srv, running := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		s.ServeGET(w, r, Source{URL: u}, Identity{})
	})
	stalledClient(t, srv.Listener.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-\r\n\r\n")
	if !waitFor(3*time.Second, func() bool { return running.Load() == 1 }) {
		t.Fatal("the forward never started")
	}
	if !waitFor(15*time.Second, func() bool { return running.Load() == 0 }) {
		t.Fatal("15 s after a client stopped reading (write idle 1 s), the forward still runs")
	}
}

// A source that sends the head of a forwarded answer (a manifest, a Range
// GET) and then nothing more must not hold the handler and its source
// connection for as long as the client waits: after SourceIdle without a
// byte the forward ends, and the client sees a cut answer, not a whole
// one.
func TestForwardDropsSourceThatStopsSending(t *testing.T) {
	origin := httpidletest.StalledOrigin(t, `{"head":`, 1000)
	s := newTestSwarm(t)
	s.opt.SourceIdle = time.Second
	u, _ := url.Parse(origin.URL + "/v2/x/manifests/latest")
	srv, running := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		s.Forward(w, r, Source{URL: u})
	})
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the client got %d bytes as a whole answer of 1000", len(b))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the cut came %v after the source stopped (source idle 1 s): %v", d, err)
	}
	if !waitFor(5*time.Second, func() bool { return running.Load() == 0 }) {
		t.Fatal("the forward still runs after the client saw the cut")
	}
}
