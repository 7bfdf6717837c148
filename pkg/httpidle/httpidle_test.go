package httpidle

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/httpidle/httpidletest"
)

// A handler writing to a client that reads nothing gets an error once
// a write made no progress for the idle time, instead of blocking.
func TestWriteToStalledClientFails(t *testing.T) {
	const idle = 200 * time.Millisecond
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iw := New(w, idle)
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for i := 0; i < 256; i++ { // 256 MiB: far more than the socket buffers
			if _, err := iw.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("256 MiB written to a client that read nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("10 s after the client stopped reading (idle 200 ms), the handler is still blocked in a write")
	}
}

// A body read that waits on a source sending nothing fails once Idle
// passed; the time a caller spends between reads (writing to a slow
// client) does not count.
func TestTransportBoundsOnlyTheWaitInRead(t *testing.T) {
	const idle = 200 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4")
		_, _ = w.Write([]byte("ab"))
		http.NewResponseController(w).Flush()
		time.Sleep(idle / 4)
		_, _ = w.Write([]byte("cd"))
	}))
	defer srv.Close()
	c := &http.Client{Transport: Transport{Base: http.DefaultTransport, Idle: idle}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * idle) // the caller is busy: not the source's idleness
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(rest) != "cd" {
		t.Fatalf("after a pause between reads: %q, %v; want the rest of the body", rest, err)
	}
	resp, err = c.Get(httpidletest.StalledOrigin(t, "ab", 4).URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("read %q from a source that stopped sending, without an error", b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the read of a stalled source failed after %v (idle %v)", d, idle)
	}
}

type idleCloser struct {
	http.RoundTripper
	closed int
}

func (c *idleCloser) CloseIdleConnections() { c.closed++ }

// TestTransportClosesBaseIdleConnections: http.Client.CloseIdleConnections
// reaches the wrapped transport, so a client built on Transport does not
// keep its source connections open after use.
func TestTransportClosesBaseIdleConnections(t *testing.T) {
	base := &idleCloser{RoundTripper: http.DefaultTransport}
	hc := &http.Client{Transport: Transport{Base: base, Idle: time.Second}}
	hc.CloseIdleConnections()
	if base.closed != 1 {
		t.Fatalf("base transport's CloseIdleConnections called %d times, want 1", base.closed)
	}
}
