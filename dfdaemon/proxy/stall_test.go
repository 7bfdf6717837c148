package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/httpidle/httpidletest"
)

// A client that sends a forwarded GET and then reads nothing must not
// hold the handler and the origin connection: after the idle timeout
// without progress the forward ends, as an idle tunnel does.
func TestForwardDropsClientThatStopsReading(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB: far more than the socket buffers
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	defer origin.Close()
	p, err := New(Options{Logger: quietLogger(), IdleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var running atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		p.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	host := origin.Listener.Addr().String()
	if _, err := c.Write([]byte("GET http://" + host + "/big HTTP/1.1\r\nHost: " + host + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Never read.
	wait := func(d time.Duration, want int64) bool {
		for end := time.Now().Add(d); running.Load() != want; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				return false
			}
		}
		return true
	}
	if !wait(3*time.Second, 1) {
		t.Fatal("the forward never started")
	}
	if !wait(15*time.Second, 0) {
		t.Fatal("15 s after a client stopped reading (idle timeout 1 s), the forward still runs")
	}
}

// An origin that sends the head of a forwarded answer and then nothing
// more is cut off after the idle timeout, as an idle tunnel is: the
// client sees a cut answer, and the handler and the origin connection are
// freed, rather than held for as long as the client waits.
func TestForwardDropsOriginThatStopsSending(t *testing.T) {
	origin := httpidletest.StalledOrigin(t, "head", 1000)
	_, srv := startProxy(t, Options{IdleTimeout: time.Second})
	start := time.Now()
	// The head may stay in the proxy's buffer (no flush interval), so
	// the cut shows either before or after the response header.
	resp, err := proxyClient(srv.URL, nil).Get(origin.URL + "/manifest")
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("the client got %d bytes as a whole answer of 1000", len(b))
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the cut came %v after the origin stopped (idle 1 s): %v", d, err)
	}
}
