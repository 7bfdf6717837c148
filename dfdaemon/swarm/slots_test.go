package swarm

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// heldBlobs is a source of one blob per path. A GET sends the length and
// the first 64 KiB, then holds the rest until its path is let go (or the
// request ends); once let go, GETs of the path are served whole at once.
// HEADs answer at once, and /denied refuses everything with a 401.
type heldBlobs struct {
	*httptest.Server
	mu    sync.Mutex
	gates map[string]chan struct{}
	open  map[string]bool // paths let go
	gets  map[string]int
}

func newHeldBlobs(t *testing.T) *heldBlobs {
	o := &heldBlobs{gates: map[string]chan struct{}{}, open: map[string]bool{}, gets: map[string]int{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

// letAll lets every path asked for so far go.
func (o *heldBlobs) letAll() {
	o.mu.Lock()
	var paths []string
	for p := range o.gates {
		paths = append(paths, p)
	}
	o.mu.Unlock()
	for _, p := range paths {
		o.let(p)
	}
}

// blobOf is the blob at path.
func blobOf(path string) []byte { return bytes.Repeat([]byte(path+"-0123456789abcdef"), 1<<14) }

func (o *heldBlobs) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/denied" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body := blobOf(r.URL.Path)
	if r.Method != http.MethodGet {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	}
	o.mu.Lock()
	o.gets[r.URL.Path]++
	o.mu.Unlock()
	gate := o.gate(r.URL.Path)
	select {
	case <-gate:
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	default:
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body[:64<<10])
	w.(http.Flusher).Flush()
	select {
	case <-gate:
		_, _ = w.Write(body[64<<10:])
	case <-r.Context().Done():
	}
}

func (o *heldBlobs) gate(path string) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gates[path] == nil {
		o.gates[path] = make(chan struct{})
	}
	return o.gates[path]
}

// let sends the rest of every GET of path, now and later.
func (o *heldBlobs) let(path string) {
	g := o.gate(path)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.open[path] {
		o.open[path] = true
		close(g)
	}
}

// getsOf is how many GETs of path the source had.
func (o *heldBlobs) getsOf(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gets[path]
}

// capServer serves every request through s.ServeGET from the held source,
// the request's path naming the blob, and counts the handlers running.
func capServer(t *testing.T, s *Swarm, o *heldBlobs) (*httptest.Server, func() int64) {
	srv, running := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		u, _ := url.Parse(o.URL + r.URL.Path)
		s.ServeGET(w, r, Source{URL: u}, Identity{})
	})
	// Before the servers close (cleanups run last first): a failed test's
	// held streams end, and the servers' Close returns.
	t.Cleanup(o.letAll)
	return srv, running.Load
}

// streamA starts a GET of /a and waits until its stream runs (the source
// has its GET): it holds a slot until /a is let go.
func streamA(t *testing.T, s *Swarm, o *heldBlobs, srv *httptest.Server) <-chan answer {
	t.Helper()
	ch := get(context.Background(), srv, http.MethodGet, "/a")
	if !waitFor(5*time.Second, func() bool { return o.getsOf("/a") == 1 && value(s.m.InFlight) == 1 }) {
		t.Fatal("the first stream never started")
	}
	return ch
}

// answer is what a client got: status, body and error.
type answer struct {
	code int
	body []byte
	err  error
}

// get sends a request to srv in the background; its answer comes on the
// channel.
func get(ctx context.Context, srv *httptest.Server, method, path string, hdr ...string) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- answer{code: resp.StatusCode, body: b, err: err}
	}()
	return out
}

// wantBlob fails unless an answer comes on ch within d and is the whole
// blob of path.
func wantBlob(t *testing.T, ch <-chan answer, path string, d time.Duration) {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil || a.code != http.StatusOK || !bytes.Equal(a.body, blobOf(path)) {
			t.Fatalf("GET %s: %d, %d bytes, %v; want the %d-byte blob", path, a.code, len(a.body), a.err, len(blobOf(path)))
		}
	case <-time.After(d):
		t.Fatalf("GET %s: no answer in %v", path, d)
	}
}

// pending fails if ch has an answer now.
func pending(t *testing.T, ch <-chan answer, what string) {
	t.Helper()
	select {
	case a := <-ch:
		t.Fatalf("%s answered (%d, %d bytes, %v) while it should wait for a stream slot", what, a.code, len(a.body), a.err)
	default:
	}
}

// With a cap of one stream, a second blob GET waits, without asking the
// source, until the first stream ends, and then streams; two GETs of the
// same blob are two streams and wait the same way. Without a cap the
// second streams at once.
func TestStreamCapSecondGETWaits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		second string
	}{{"no cap", 0, "/b"}, {"cap 1", 1, "/b"}, {"cap 1, same blob", 1, "/a"}} {
		t.Run(tc.name, func(t *testing.T) {
			o := newHeldBlobs(t)
			s := newTestSwarmWith(t, func(opt *Options) { opt.MaxStreams = tc.max })
			srv, _ := capServer(t, s, o)
			first := streamA(t, s, o, srv)
			second := get(context.Background(), srv, http.MethodGet, tc.second)
			if tc.max == 0 {
				if !waitFor(5*time.Second, func() bool { return value(s.m.InFlight) == 2 }) {
					t.Fatalf("without a cap the second GET did not stream beside the first (%v in flight, %v waiting)",
						value(s.m.InFlight), value(s.m.Waiting))
				}
			} else {
				if !waitFor(5*time.Second, func() bool { return value(s.m.Waiting) == 1 }) {
					t.Fatalf("the second GET is not waiting: %v in flight, %v waiting", value(s.m.InFlight), value(s.m.Waiting))
				}
				time.Sleep(300 * time.Millisecond)
				pending(t, second, "GET "+tc.second)
				want := 0 // the first stream's GET of /a is the only one
				if tc.second == "/a" {
					want = 1
				}
				if n := o.getsOf(tc.second); n != want {
					t.Fatalf("the source had %d GETs of %s while the second waited, want %d", n, tc.second, want)
				}
			}
			o.let("/a")
			wantBlob(t, first, "/a", 10*time.Second)
			if tc.second == "/b" {
				o.let("/b")
			}
			wantBlob(t, second, tc.second, 10*time.Second)
			if value(s.m.Waiting) != 0 || value(s.m.WaitTimeouts) != 0 || value(s.m.Forwarded) != 0 {
				t.Fatalf("%v waiting, %v wait timeouts, %v forwarded; want none", value(s.m.Waiting),
					value(s.m.WaitTimeouts), value(s.m.Forwarded))
			}
		})
	}
}

// A waiting client that leaves gives its place up: its handler returns,
// the source never sees its GET, and the slot goes to the next in line.
func TestStreamCapWaiterLeaves(t *testing.T) {
	o := newHeldBlobs(t)
	s := newTestSwarmWith(t, func(opt *Options) { opt.MaxStreams = 1 })
	srv, running := capServer(t, s, o)
	first := streamA(t, s, o, srv)
	ctx, cancel := context.WithCancel(context.Background())
	leaving := get(ctx, srv, http.MethodGet, "/b")
	if !waitFor(5*time.Second, func() bool { return value(s.m.Waiting) == 1 }) {
		t.Fatal("the second GET is not waiting")
	}
	third := get(context.Background(), srv, http.MethodGet, "/c")
	if !waitFor(5*time.Second, func() bool { return value(s.m.Waiting) == 2 }) {
		t.Fatal("the third GET is not waiting")
	}
	cancel()
	<-leaving
	if !waitFor(5*time.Second, func() bool { return value(s.m.Waiting) == 1 && running() == 2 }) {
		t.Fatalf("after the client left: %v waiting, %d handlers running; want 1 and 2", value(s.m.Waiting), running())
	}
	o.let("/a")
	wantBlob(t, first, "/a", 10*time.Second)
	if !waitFor(5*time.Second, func() bool { return o.getsOf("/c") == 1 }) {
		t.Fatal("the third GET did not get the slot the first left")
	}
	o.let("/c")
	wantBlob(t, third, "/c", 10*time.Second)
	if n := o.getsOf("/b"); n != 0 || value(s.m.Forwarded) != 0 {
		t.Fatalf("the GET that left: %d source GETs, %v forwarded; want none", n, value(s.m.Forwarded))
	}
}

// A GET that waits StreamWait for a slot is forwarded to the source whole,
// while the stream ahead still runs, and counted.
func TestStreamCapBoundForwards(t *testing.T) {
	o := newHeldBlobs(t)
	const bound = 300 * time.Millisecond
	s := newTestSwarmWith(t, func(opt *Options) { opt.MaxStreams, opt.StreamWait = 1, bound })
	srv, _ := capServer(t, s, o)
	first := streamA(t, s, o, srv)
	o.let("/b")
	start := time.Now()
	wantBlob(t, get(context.Background(), srv, http.MethodGet, "/b"), "/b", 10*time.Second)
	if d := time.Since(start); d < bound {
		t.Fatalf("answered after %v, before the %v bound", d, bound)
	}
	if value(s.m.WaitTimeouts) != 1 || value(s.m.Forwarded) != 1 || value(s.m.InFlight) != 1 || value(s.m.Waiting) != 0 {
		t.Fatalf("%v wait timeouts, %v forwarded, %v in flight, %v waiting; want 1, 1, 1, 0", value(s.m.WaitTimeouts),
			value(s.m.Forwarded), value(s.m.InFlight), value(s.m.Waiting))
	}
	o.let("/a")
	wantBlob(t, first, "/a", 10*time.Second)
}

// What is forwarded never waits for a slot: a HEAD, a Range GET, a GET the
// source refuses, and a Forward (a manifest) are answered while the only
// slot is held and the bound is far.
func TestStreamCapForwardsDoNotWait(t *testing.T) {
	o := newHeldBlobs(t)
	s := newTestSwarmWith(t, func(opt *Options) { opt.MaxStreams = 1 })
	srv, _ := capServer(t, s, o)
	first := streamA(t, s, o, srv)
	o.let("/b")
	u, _ := url.Parse(o.URL + "/b")
	manifest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.Forward(w, r, Source{URL: u}) }))
	defer manifest.Close()
	for _, c := range []struct {
		what string
		ch   <-chan answer
		code int
	}{
		{"HEAD", get(context.Background(), srv, http.MethodHead, "/a"), http.StatusOK},
		{"Range GET", get(context.Background(), srv, http.MethodGet, "/b", "Range", "bytes=0-9"), http.StatusPartialContent},
		{"refused GET", get(context.Background(), srv, http.MethodGet, "/denied"), http.StatusUnauthorized},
		{"Forward", get(context.Background(), manifest, http.MethodGet, "/"), http.StatusOK},
	} {
		select {
		case a := <-c.ch:
			if a.code != c.code {
				t.Errorf("%s: %d (%v), want %d", c.what, a.code, a.err, c.code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s waited while the stream slot was held", c.what)
		}
	}
	if value(s.m.Waiting) != 0 || value(s.m.WaitTimeouts) != 0 {
		t.Fatalf("%v waiting, %v wait timeouts; want none", value(s.m.Waiting), value(s.m.WaitTimeouts))
	}
	o.let("/a")
	wantBlob(t, first, "/a", 10*time.Second)
}
