package cdn

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// homeT is a member serving a task's file from a real CDN manager over
// the cluster fetch route; mode makes it misbehave.
type homeT struct {
	*httptest.Server
	mode string // "", "lie" (a byte of piece 1 flipped), "refuse", "cut" (gone after piece 0), "changed" (cut, and the origin's file is newer)
}

func newHomeT(t *testing.T, home *Manager, id string, length int64, mode string) *homeT {
	h := &homeT{mode: mode}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != types.ClusterFetchPath || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if h.mode == "refuse" {
			http.Error(w, "reading it from you", http.StatusConflict)
			return
		}
		for k, v := range home.Validators(id) {
			w.Header()[k] = v
		}
		if h.mode == "changed" {
			// The home read an older version than the origin has now.
			w.Header().Set("Last-Modified", time.Now().Add(-48*time.Hour).UTC().Format(http.TimeFormat))
		}
		w.Header().Set(types.ClusterHeaderTaskID, id)
		w.Header().Set(types.ClusterHeaderFileLength, strconv.FormatInt(length, 10))
		var out io.Writer = w
		switch h.mode {
		case "lie":
			out = &flipWriter{w: w, at: int64(piece.DefaultSize) + frameHead + 100 + frameHead}
		case "cut", "changed":
			out = &cutWriter{w: w, left: int64(piece.DefaultSize) + frameHead + 1000}
		}
		flush := func() error { return http.NewResponseController(w).Flush() }
		_ = home.ServeMember(r.Context(), id, out, flush, askedKeepAlive(t, r))
	}))
	t.Cleanup(h.Close)
	return h
}

// askedKeepAlive is the keep-alive interval a cluster fetch asks for, as
// the API's route reads it.
func askedKeepAlive(t *testing.T, r *http.Request) time.Duration {
	var ask types.ClusterFetchRequest
	if err := json.NewDecoder(r.Body).Decode(&ask); err != nil {
		t.Errorf("cluster fetch request: %v", err)
	}
	return time.Duration(ask.KeepAliveMillis) * time.Millisecond
}

// flipWriter flips the byte at offset at of the stream.
type flipWriter struct {
	w      io.Writer
	at, n  int64
	flippd bool
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if !f.flippd && f.at >= f.n && f.at < f.n+int64(len(p)) {
		p = bytes.Clone(p)
		p[f.at-f.n] ^= 0xff
		f.flippd = true
	}
	f.n += int64(len(p))
	return f.w.Write(p)
}

// cutWriter fails after left bytes, as a member that dies mid-file.
type cutWriter struct {
	w    io.Writer
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.ErrClosedPipe
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	c.left -= int64(len(p))
	n, err := c.w.Write(p)
	if c.left == 0 {
		panic(http.ErrAbortHandler) // drop the connection
	}
	return n, err
}

// warmHome is an origin serving data and a member that has fetched it
// whole as task t1 (pieces long).
func warmHome(t *testing.T, data []byte, pieces int) (*originT, *Manager, Source) {
	t.Helper()
	o := newOriginT(t, data)
	hp := NewMockProgress(gomock.NewController(t))
	home, _ := clusterManager(t, hp, Metrics{})
	expectRun(hp, "t1", pieces)
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	if _, res := start(t, home, src); !res.OK {
		t.Fatalf("home: %+v", res)
	}
	return o, home, src
}

// homeOf is a member that has fetched task t1 whole from origin/f.
func homeOf(t *testing.T, origin string) (*Manager, Source) {
	t.Helper()
	home, _ := clusterManager(t, anyProgress(t), Metrics{})
	src := Source{TaskID: "t1", RawURL: origin + "/f", TaskURL: origin + "/f"}
	if _, res := start(t, home, src); !res.OK {
		t.Fatalf("home: %+v", res)
	}
	return home, src
}

func clusterManager(t *testing.T, p Progress, mx Metrics) (*Manager, *store.Store) {
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := New(Config{SourceAllow: loopbackAllow()}, st, p, mx, quietLog())
	t.Cleanup(m.Close)
	return m, st
}

// The asker's cache holds the origin's bytes whatever the home does; what
// changes is where they came from.
func TestClusterSource(t *testing.T) {
	data := make([]byte, 2*int(piece.ContentSize(piece.DefaultSize))+100)
	for i := range data {
		data[i] = byte(i*13 + i>>11)
	}
	for _, tc := range []struct {
		mode, reason string
		fromHome     int64 // content bytes verified from the home
	}{
		{"", "", int64(len(data))},
		{"lie", reasonDigest, piece.ContentSize(piece.DefaultSize)},
		{"cut", reasonBroken, piece.ContentSize(piece.DefaultSize)},
		{"refuse", reasonRefused, 0},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			o, home, src := warmHome(t, data, 3)
			h := newHomeT(t, home, "t1", int64(len(data)), tc.mode)
			mx := Metrics{DownloadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "o"}),
				ClusterBytes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}),
				ClusterFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"})}
			ap := NewMockProgress(gomock.NewController(t))
			asker, st := clusterManager(t, ap, mx)
			expectRun(ap, "t1", 3)
			src.Via = strings.TrimPrefix(h.URL, "http://")
			if _, res := start(t, asker, src); !res.OK {
				t.Fatalf("asker: %+v", res)
			}
			checkCache(t, st, data)
			if got := int64(counterValue(t, mx.ClusterBytes)); got != tc.fromHome {
				t.Errorf("%d bytes from the home, want %d", got, tc.fromHome)
			}
			if got := int64(counterValue(t, mx.DownloadBytes)); got != int64(len(data))-tc.fromHome {
				t.Errorf("%d bytes from the origin, want %d", got, int64(len(data))-tc.fromHome)
			}
			if tc.reason != "" && counterValue(t, mx.ClusterFallbacks.WithLabelValues(tc.reason)) != 1 {
				t.Errorf("no %s fallback counted", tc.reason)
			}
			want, n := "", 2
			if tc.fromHome > 0 && tc.fromHome < int64(len(data)) {
				want = "bytes=" + strconv.FormatInt(tc.fromHome, 10) + "-"
			}
			if tc.mode == "" {
				n = 1
			}
			if ranges, _ := originRequests(t, o, n); n == 2 && ranges[1] != want {
				t.Errorf("origin requests: ranges %q, want the home's and then %q", ranges, want)
			}
			if asker.MemberOf("t1") != "" {
				t.Error("the fetch still counts as reading from the home")
			}
		})
	}
}

func checkCache(t *testing.T, st *store.Store, data []byte) {
	t.Helper()
	raw, err := os.ReadFile(st.DataPath("t1"))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for off := int64(0); off < int64(len(raw)); off += int64(piece.DefaultSize) {
		c, err := piece.Unwrap(raw[off:min(off+int64(piece.DefaultSize), int64(len(raw)))])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the asker's cache differs from the origin's file")
	}
}

// A member that fails mid-file after the origin's file changed: the rest
// is not taken from the new version (If-Range), the fetch fails instead.
func TestClusterSourceChangedSinceHome(t *testing.T) {
	data := bytes.Repeat([]byte("v2"), int(piece.ContentSize(piece.DefaultSize)))
	o, home, src := warmHome(t, data, 2)
	h := newHomeT(t, home, "t1", int64(len(data)), "changed")
	ap := NewMockProgress(gomock.NewController(t))
	asker, _ := clusterManager(t, ap, Metrics{})
	ap.EXPECT().ResetCDN("t1")
	ap.EXPECT().SetCDNPiece("t1", 0)
	ap.EXPECT().FinishCDN("t1", 0, false)
	src.Via = strings.TrimPrefix(h.URL, "http://")
	if _, res := start(t, asker, src); res.OK || res.Err == nil || !strings.Contains(res.Err.Error(), "changed") {
		t.Fatalf("a file completed across versions: %+v", res)
	}
	if _, statuses := originRequests(t, o, 2); statuses[1] != http.StatusOK {
		t.Fatalf("origin statuses %v, want an If-Range answered whole", statuses)
	}
}

// A home whose fetch of the task fails sends an error frame; an unknown
// task gets one at once.
func TestServeMemberUnknownTask(t *testing.T) {
	m, _ := clusterManager(t, NewMockProgress(gomock.NewController(t)), Metrics{})
	var buf bytes.Buffer
	if err := m.ServeMember(context.Background(), "nope", &buf, func() error { return nil }, 0); err == nil {
		t.Fatal("served an unknown task")
	}
	if buf.Len() < frameHead || !strings.Contains(buf.String(), "no cache file") {
		t.Fatalf("no error frame: %q", buf.String())
	}
}

func quietLog() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return log
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	return written(t, c).GetCounter().GetValue()
}

// written is a collector's sample as it would be exported.
func written(t *testing.T, c prometheus.Metric) *dto.Metric {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// Two members that take each other for a task's home and start its fetch
// at the same moment: each is marked as reading from the other before it
// asks, so each refuses the other (as the API's fetch route does) and both
// read the origin instead of waiting on each other.
func TestClusterCrossedFetchesRefuse(t *testing.T) {
	data := bytes.Repeat([]byte("crossed"), 300000)
	o := newOriginT(t, data)
	var a, b *Manager
	both := make(chan struct{})
	// Both members look at their own mark before either answers: the
	// first 409 makes its asker drop its mark and read the origin, after
	// which serving it would be right, and the test is about the moment
	// both fetches are in flight.
	var checked sync.WaitGroup
	checked.Add(2)
	refuser := func(self **Manager) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-both // both fetches have started
			marked := (*self).MemberOf("t1") != ""
			checked.Done()
			checked.Wait()
			if marked {
				http.Error(w, "reading it from a member", http.StatusConflict)
				return
			}
			t.Error("a member served a task it reads from the asker")
			http.Error(w, "unexpected", http.StatusInternalServerError)
		}))
		t.Cleanup(s.Close)
		return s
	}
	sa, sb := refuser(&a), refuser(&b)
	mxs := make([]Metrics, 2)
	for i := range mxs {
		mxs[i] = Metrics{ClusterFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"})}
	}
	pa, pb := NewMockProgress(gomock.NewController(t)), NewMockProgress(gomock.NewController(t))
	a, _ = clusterManager(t, pa, mxs[0])
	b, _ = clusterManager(t, pb, mxs[1])
	total := piece.Count(int64(len(data)), piece.ComputeSize(int64(len(data))))
	expectRun(pa, "t1", total)
	expectRun(pb, "t1", total)
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	results := make(chan Result, 2)
	for _, c := range []struct {
		m   *Manager
		via string
	}{{a, sb.URL}, {b, sa.URL}} {
		s := src
		s.Via = strings.TrimPrefix(c.via, "http://")
		// Start returns once the member answered: both run at once.
		go func() {
			if _, err := c.m.Start(s, func(r Result) { results <- r }); err != nil {
				t.Error(err)
				results <- Result{}
			}
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); a.MemberOf("t1") == "" || b.MemberOf("t1") == ""; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			close(both)
			t.Fatal("a fetch is not marked while it waits for the member's answer")
		}
	}
	close(both)
	for range 2 {
		if r := <-results; !r.OK {
			t.Fatalf("fetch failed: %+v", r)
		}
	}
	for i, mx := range mxs {
		if n := counterValue(t, mx.ClusterFallbacks.WithLabelValues(reasonRefused)); n != 1 {
			t.Errorf("member %d: %.0f refused fetches, want 1", i, n)
		}
	}
}

// originRequests waits until the origin recorded n requests (it records
// one once its handler returned, which may be after the CDN is done with
// the body) and returns their Range headers and statuses; more than n fail.
func originRequests(t *testing.T, o *originT, n int) ([]string, []int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		o.mu.Lock()
		ranges, statuses := append([]string(nil), o.ranges...), append([]int(nil), o.statuses...)
		o.mu.Unlock()
		if len(ranges) > n || (len(ranges) < n && time.Now().After(deadline)) {
			t.Fatalf("origin requests: ranges %q statuses %v, want %d", ranges, statuses, n)
		}
		if len(ranges) == n {
			return ranges, statuses
		}
	}
}

// pauseWriter pauses once for d when the stream passes offset at, as a
// home that sends nothing for that long (blocked in a write, it sends no
// keep-alive either).
type pauseWriter struct {
	w      http.ResponseWriter
	at, n  int64
	d      time.Duration
	paused bool
}

func (p *pauseWriter) Write(b []byte) (int, error) {
	if !p.paused && p.n >= p.at {
		p.paused = true
		p.w.(http.Flusher).Flush()
		select {
		case <-time.After(p.d):
		case <-p.w.(interface{ Context() context.Context }).Context().Done():
		}
	}
	p.n += int64(len(b))
	return p.w.Write(b)
}

// pausingHome serves task t1 of home, going silent for pause after piece 0.
func pausingHome(t *testing.T, home *Manager, length int64, pause time.Duration) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range home.Validators("t1") {
			w.Header()[k] = v
		}
		w.Header().Set(types.ClusterHeaderTaskID, "t1")
		w.Header().Set(types.ClusterHeaderFileLength, strconv.FormatInt(length, 10))
		out := &pauseWriter{w: ctxWriter{w, r.Context()}, at: int64(piece.DefaultSize) + frameHead, d: pause}
		_ = home.ServeMember(r.Context(), "t1", out, func() error { w.(http.Flusher).Flush(); return nil }, askedKeepAlive(t, r))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// ctxWriter is a response writer that knows its request's context.
type ctxWriter struct {
	http.ResponseWriter
	ctx context.Context
}

func (c ctxWriter) Context() context.Context { return c.ctx }
func (c ctxWriter) Flush()                   { c.ResponseWriter.(http.Flusher).Flush() }

// timedAsker is a member whose sourceTimeout is d (its stall bound 3 x d).
// Its progress takes any result: the tests check it.
func timedAsker(t *testing.T, d time.Duration) (*Manager, *store.Store, Metrics) {
	mx := Metrics{ClusterBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}),
		ClusterFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"})}
	ap := NewMockProgress(gomock.NewController(t))
	ap.EXPECT().ResetCDN("t1")
	ap.EXPECT().SetCDNPiece("t1", gomock.Any()).AnyTimes()
	ap.EXPECT().FinishCDN("t1", gomock.Any(), gomock.Any())
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	asker := New(Config{SourceAllow: loopbackAllow(), SourceTimeout: d}, st, ap, mx, quietLog())
	t.Cleanup(asker.Close)
	return asker, st, mx
}

// A home 1.8 s late with its next piece, under the stall bound of
// 3 x sourceTimeout (1 s), is still read: the origin is not.
func TestClusterSlowHomeWithinStallBound(t *testing.T) {
	data := make([]byte, 2*int(piece.ContentSize(piece.DefaultSize))+100)
	_, home, src := warmHome(t, data, 3)
	srv := pausingHome(t, home, int64(len(data)), 1800*time.Millisecond)
	asker, st, mx := timedAsker(t, time.Second)
	src.Via = strings.TrimPrefix(srv.URL, "http://")
	if _, res := start(t, asker, src); !res.OK || res.PieceTotal != 3 {
		t.Fatalf("asker: %+v", res)
	}
	checkCache(t, st, data)
	if n := counterValue(t, mx.ClusterFallbacks.WithLabelValues(reasonBroken)); n != 0 {
		t.Fatalf("a home 1.8 s late with a piece (stall bound 3 s) was dropped for the origin (%v fallbacks)", n)
	}
}

// A home that stays silent past the stall bound is dropped for the origin
// (not the fill failed by its watchdog), and the origin finishes the file.
func TestClusterSilentHomeDroppedForOrigin(t *testing.T) {
	data := make([]byte, 2*int(piece.ContentSize(piece.DefaultSize))+100)
	for i := range data {
		data[i] = byte(i * 5)
	}
	o, home, src := warmHome(t, data, 3)
	srv := pausingHome(t, home, int64(len(data)), 20*time.Second)
	asker, st, mx := timedAsker(t, 300*time.Millisecond)
	src.Via = strings.TrimPrefix(srv.URL, "http://")
	began := time.Now()
	if _, res := start(t, asker, src); !res.OK || res.PieceTotal != 3 {
		t.Fatalf("asker: %+v", res)
	}
	checkCache(t, st, data)
	if n := counterValue(t, mx.ClusterFallbacks.WithLabelValues(reasonBroken)); n != 1 {
		t.Fatalf("%v fallbacks, want the silent home dropped once", n)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("the fill took %s: the silent home was waited for", took)
	}
	if ranges, _ := originRequests(t, o, 2); !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("origin requests %q, want the rest by Range", ranges)
	}
}

// pausingOrigin serves data (with a Last-Modified), stopping for pause
// after its first at bytes, as an origin slow to give the next piece.
func pausingOrigin(t *testing.T, data []byte, at int, pause time.Duration) *httptest.Server {
	mod := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", mod)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data[:at])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(pause):
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(data[at:])
	}))
	t.Cleanup(s.Close)
	return s
}

// A home waiting longer than the asker's stall bound for its origin to
// give the next piece sends keep-alives meanwhile: the asker keeps reading
// it, and the origin is read once, by the home.
func TestClusterHomeWaitingOnOriginKeepsAlive(t *testing.T) {
	data := make([]byte, 2*int(piece.ContentSize(piece.DefaultSize))+100)
	o := pausingOrigin(t, data, int(piece.ContentSize(piece.DefaultSize))+1000, 1500*time.Millisecond)
	hp := NewMockProgress(gomock.NewController(t))
	home, _ := clusterManager(t, hp, Metrics{})
	expectRun(hp, "t1", 3)
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	homeDone := make(chan Result, 1)
	if _, err := home.Start(src, func(r Result) { homeDone <- r }); err != nil {
		t.Fatal(err)
	}
	h := newHomeT(t, home, "t1", int64(len(data)), "")
	asker, st, mx := timedAsker(t, 300*time.Millisecond) // silent for 900 ms is a stall
	src.Via = strings.TrimPrefix(h.URL, "http://")
	if _, res := start(t, asker, src); !res.OK || res.PieceTotal != 3 {
		t.Fatalf("asker: %+v", res)
	}
	checkCache(t, st, data)
	if n := counterValue(t, mx.ClusterFallbacks.WithLabelValues(reasonBroken)); n != 0 {
		t.Fatalf("a home waiting 1.5 s on its origin was dropped (%v fallbacks)", n)
	}
	if got := int(counterValue(t, mx.ClusterBytes)); got != len(data) {
		t.Fatalf("%d bytes from the home, want %d", got, len(data))
	}
	if r := <-homeDone; !r.OK {
		t.Fatalf("home: %+v", r)
	}
}

// A home sends keep-alive frames while it waits for a piece only to an
// asker that asked for them: an older asker takes any frame but the next
// piece for a broken stream.
func TestServeMemberKeepAliveOnlyWhenAsked(t *testing.T) {
	data := make([]byte, 2*int(piece.ContentSize(piece.DefaultSize))+100)
	o := pausingOrigin(t, data, int(piece.ContentSize(piece.DefaultSize))+1000, 600*time.Millisecond)
	hp := NewMockProgress(gomock.NewController(t))
	home, _ := clusterManager(t, hp, Metrics{})
	expectRun(hp, "t1", 3)
	homeDone := make(chan Result, 1)
	if _, err := home.Start(Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}, func(r Result) { homeDone <- r }); err != nil {
		t.Fatal(err)
	}
	streams := []time.Duration{0, 100 * time.Millisecond}
	bufs := make([]bytes.Buffer, len(streams))
	var wg sync.WaitGroup
	for i, every := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := home.ServeMember(context.Background(), "t1", &bufs[i], func() error { return nil }, every); err != nil {
				t.Errorf("serve: %v", err)
			}
		}()
	}
	wg.Wait()
	if r := <-homeDone; !r.OK {
		t.Fatalf("home: %+v", r)
	}
	for i, every := range streams {
		pieces, beats := countFrames(t, bufs[i].Bytes())
		if pieces != 3 || (every == 0) != (beats == 0) || (every > 0 && beats < 3) {
			t.Errorf("keep-alive %s: %d pieces and %d keep-alives in 600 ms of waiting", every, pieces, beats)
		}
	}
}

// countFrames reads a member's stream, which must end with frameEnd.
func countFrames(t *testing.T, b []byte) (pieces, beats int) {
	t.Helper()
	for len(b) >= frameHead {
		num, n := binary.BigEndian.Uint32(b[:4]), binary.BigEndian.Uint32(b[4:8])
		b = b[frameHead+int(n):]
		switch num {
		case frameEnd:
			if len(b) != 0 {
				t.Fatalf("%d bytes after the end frame", len(b))
			}
			return pieces, beats
		case frameBeat:
			beats++
		default:
			pieces++
		}
	}
	t.Fatal("the stream has no end frame")
	return 0, 0
}

// A home whose file carries only a weak ETag (and a Last-Modified): the
// asker's resume from the origin after the home died sends the date in
// If-Range, which takes no weak ETag (RFC 9110), so the origin answers the
// rest rather than the whole file, and the fill completes.
func TestClusterFallbackWeakETagResumesByDate(t *testing.T) {
	n := 2*int(piece.ContentSize(piece.DefaultSize)) + 100
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 3)
	}
	mod := time.Now().Add(-time.Hour)
	var ifRange atomic.Value
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("If-Range"); v != "" {
			ifRange.Store(v)
		}
		w.Header().Set("ETag", `W/"v1"`)
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
	}))
	t.Cleanup(o.Close)
	home, src := homeOf(t, o.URL)
	h := newHomeT(t, home, "t1", int64(n), "cut")
	asker, st := clusterManager(t, anyProgress(t), Metrics{})
	src.Via = strings.TrimPrefix(h.URL, "http://")
	if _, res := start(t, asker, src); !res.OK {
		t.Fatalf("asker: %+v", res)
	}
	checkCache(t, st, data)
	if got, _ := ifRange.Load().(string); got != mod.UTC().Format(http.TimeFormat) {
		t.Fatalf("resumed with If-Range %q, want the Last-Modified date", got)
	}
}

// A member over TLS that accepts the connection and never answers the
// handshake (hung, or a port that is not the API's) is given up after
// the connect bound, as one that does not connect: the fill reads the
// origin. The handshake had no bound: the fill, and the registration
// that started it, waited for good.
func TestClusterMemberSilentInTLSHandshake(t *testing.T) {
	data := patterned(1000)
	o := newOriginT(t, data)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, silent
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	mx := Metrics{ClusterFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"})}
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	asker := New(Config{SourceAllow: loopbackAllow(), SourceTimeout: 300 * time.Millisecond,
		Cluster: ClusterConfig{DialTimeout: 200 * time.Millisecond, TLS: &tls.Config{MinVersion: tls.VersionTLS12}}},
		st, anyProgress(t), mx, quietLog())
	t.Cleanup(asker.Close)
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Via: ln.Addr().String()}
	done := make(chan Result, 1)
	started := make(chan error, 1)
	go func() {
		_, err := asker.Start(src, func(r Result) { done <- r })
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fill still waits for a member silent in its TLS handshake after 5 s (connect bound 200 ms)")
	}
	if r := <-done; !r.OK {
		t.Fatalf("fill: %+v", r)
	}
	if n := counterValue(t, mx.ClusterFallbacks.WithLabelValues(reasonUnreachable)); n != 1 {
		t.Fatalf("%v unreachable fallbacks, want 1", n)
	}
}

// dripWriter sends its bytes step at a time, every every, until ctx ends:
// a home up but slow (an overloaded host or link), never silent long.
type dripWriter struct {
	w     http.ResponseWriter
	ctx   context.Context
	step  int
	every time.Duration
}

func (d *dripWriter) Write(p []byte) (int, error) {
	sent := 0
	for sent < len(p) {
		select {
		case <-d.ctx.Done():
			return sent, d.ctx.Err()
		case <-time.After(d.every):
		}
		n, err := d.w.Write(p[sent:min(len(p), sent+d.step)])
		sent += n
		if err != nil {
			return sent, err
		}
		d.w.(http.Flusher).Flush()
	}
	return sent, nil
}

// A home that sends its file under the minimum source rate, never silent
// for the stall bound and sending no keep-alive (it waits for no origin:
// its file is whole), is dropped for the origin as an origin that slow
// fails its fill. It held the fill (its slot, the task) for as long as
// the file took at its rate: here 3 KB/s, about 45 minutes for 8 MiB.
func TestClusterDrippingHomeDroppedForOrigin(t *testing.T) {
	data := patterned(2*int(piece.ContentSize(piece.DefaultSize)) + 100)
	o, home, src := warmHome(t, data, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range home.Validators("t1") {
			w.Header()[k] = v
		}
		w.Header().Set(types.ClusterHeaderTaskID, "t1")
		w.Header().Set(types.ClusterHeaderFileLength, strconv.Itoa(len(data)))
		out := &dripWriter{w: w, ctx: r.Context(), step: 64, every: 20 * time.Millisecond}
		_ = home.ServeMember(r.Context(), "t1", out, func() error { return nil }, askedKeepAlive(t, r))
	}))
	t.Cleanup(srv.Close)
	asker, st, mx := timedAsker(t, 300*time.Millisecond) // 8 KiB/s over 900 ms windows
	src.Via = strings.TrimPrefix(srv.URL, "http://")
	done := make(chan Result, 1)
	if _, err := asker.Start(src, func(r Result) { done <- r }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if !r.OK {
			t.Fatalf("asker: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fill still reads a home sending 3 KB/s after 10 s (minimum 8 KiB/s over 900 ms)")
	}
	checkCache(t, st, data)
	if n := counterValue(t, mx.ClusterFallbacks.WithLabelValues(reasonBroken)); n != 1 {
		t.Fatalf("%v fallbacks, want the slow home dropped once", n)
	}
	if ranges, _ := originRequests(t, o, 2); ranges[1] != "" {
		t.Fatalf("origin requests %q, want the whole file after the home gave no piece", ranges)
	}
}
