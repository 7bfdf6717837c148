package load

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestQueryMatchesURLValues(t *testing.T) {
	got := query("/peer/task?", "dstCid", "cdnnode:1.2.3.4~x", "range", "0-99", "result", "2",
		"srcCid", "198.18.0.1-load1-5", "status", "1", "taskId", "a b&c")
	want := "/peer/task?" + url.Values{"taskId": {"a b&c"}, "srcCid": {"198.18.0.1-load1-5"}, "dstCid": {"cdnnode:1.2.3.4~x"},
		"range": {"0-99"}, "status": {"1"}, "result": {"2"}}.Encode()
	if got != want {
		t.Errorf("query = %q, want %q", got, want)
	}
}

func newPool(ts *httptest.Server) *pool {
	a := strings.TrimPrefix(ts.URL, "http://")
	return &pool{addr: a, host: a}
}

// The client reads Content-Length, chunked and close-delimited answers,
// sends JSON bodies with their length, sees the hold header and reuses
// its connection only when the server keeps it.
func TestRoundTrip(t *testing.T) {
	var conns atomic.Int32
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Server-Timing", "hold;dur=3.0")
			_, _ = io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part2")
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			if r.ContentLength != int64(len(b)) || r.Header.Get("Content-Type") != "application/json;charset=utf-8" {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			_, _ = w.Write(b)
		default:
			http.Error(w, "nope", http.StatusNotFound)
		}
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	defer ts.Close()
	p := newPool(ts)
	defer p.closeAll()
	ctx := context.Background()
	call := func(method, target string, body []byte) response {
		t.Helper()
		var out response
		err := p.roundTrip(ctx, method, target, body, func(r response) error {
			out = r
			out.body = append([]byte(nil), r.body...)
			return nil
		})
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		return out
	}
	if r := call(http.MethodGet, "/chunked", nil); r.status != 200 || string(r.body) != "part1,part2" || !r.held {
		t.Errorf("chunked: %d %q held=%v", r.status, r.body, r.held)
	}
	if r := call(http.MethodPost, "/echo", []byte(`{"a":1}`)); r.status != 200 || string(r.body) != `{"a":1}` || r.held {
		t.Errorf("echo: %d %q held=%v", r.status, r.body, r.held)
	}
	if r := call(http.MethodGet, "/missing", nil); r.status != http.StatusNotFound {
		t.Errorf("missing: %d", r.status)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 keep-alive requests", n)
	}
	if r := call(http.MethodGet, "/close", nil); string(r.body) != "bye" {
		t.Errorf("close: %q", r.body)
	}
	if len(p.idle) != 0 {
		t.Errorf("a closed connection went back to the pool")
	}
	call(http.MethodGet, "/chunked", nil)
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want a new one after Connection: close", n)
	}
}

// rawServer answers each connection's requests with handle, which returns
// false to close the connection after the answer.
func rawServer(t *testing.T, handle func(n int, w *bufio.Writer) bool) *pool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var reqs atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					keep := handle(int(reqs.Add(1)), bw)
					_ = bw.Flush()
					if !keep {
						return
					}
				}
			}()
		}
	}()
	a := ln.Addr().String()
	return &pool{addr: a, host: a}
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// A connection the server closed while idle (without saying so) is
// retried once on a new one; a connection closed before the answer on a
// fresh connection is an error.
func TestRoundTripStaleConnection(t *testing.T) {
	p := rawServer(t, func(n int, w *bufio.Writer) bool {
		_, _ = w.WriteString(okAnswer)
		return false // closes without Connection: close
	})
	ok := func(r response) error {
		if string(r.body) != "ok" {
			return errors.New("bad body")
		}
		return nil
	}
	for i := range 3 {
		if err := p.roundTrip(context.Background(), http.MethodGet, "/x", nil, ok); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}

	dead := rawServer(t, func(int, *bufio.Writer) bool { return false })
	if err := dead.roundTrip(context.Background(), http.MethodGet, "/x", nil, ok); err == nil {
		t.Error("no answer was not an error")
	}
	// A truncated answer is an error too, not a retry.
	short := rawServer(t, func(_ int, w *bufio.Writer) bool {
		_, _ = w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
		return false
	})
	if err := short.roundTrip(context.Background(), http.MethodGet, "/x", nil, ok); err == nil {
		t.Error("truncated body was not an error")
	}
}

// Cancelling the context aborts a request the server holds.
func TestRoundTripCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p := rawServer(t, func(int, *bufio.Writer) bool { <-release; return false })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	err := p.roundTrip(ctx, http.MethodGet, "/hold", nil, func(response) error { return nil })
	if err == nil || time.Since(t0) > 5*time.Second {
		t.Errorf("err %v after %v", err, time.Since(t0))
	}
}
