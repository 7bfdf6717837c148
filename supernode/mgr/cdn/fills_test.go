package cdn

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// heldOrigin answers a GET for a path with its headers at once and holds
// the body until the path is let go; arrived gets the path of each GET
// without Range as it comes in (a Range GET, the source pattern's probe,
// is answered at once and not told).
type heldOrigin struct {
	*httptest.Server
	data    []byte
	arrived chan string
	mu      sync.Mutex
	gates   map[string]chan struct{}
}

func newHeldOrigin(t *testing.T, data []byte) *heldOrigin {
	o := &heldOrigin{data: data, arrived: make(chan string, 64), gates: map[string]chan struct{}{}}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(o.data))
			return
		}
		o.arrived <- r.URL.Path
		w.Header().Set("Content-Length", strconv.Itoa(len(o.data)))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-o.gate(r.URL.Path):
			_, _ = w.Write(o.data)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *heldOrigin) gate(path string) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gates[path] == nil {
		o.gates[path] = make(chan struct{})
	}
	return o.gates[path]
}

// let sends the body of path.
func (o *heldOrigin) let(path string) { close(o.gate(path)) }

// next is the path of the next GET, or "" when none comes within d.
func (o *heldOrigin) next(d time.Duration) string {
	select {
	case p := <-o.arrived:
		return p
	case <-time.After(d):
		return ""
	}
}

func (o *heldOrigin) src(id string) Source {
	return Source{TaskID: id, RawURL: o.URL + "/" + id, TaskURL: o.URL + "/" + id}
}

// newCappedManager is a manager with at most limit fills at once, and its
// gauges of running and waiting fills.
func newCappedManager(t *testing.T, limit int) (*Manager, *store.Store, Metrics) {
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mx := Metrics{Fills: prometheus.NewGauge(prometheus.GaugeOpts{Name: "running"}),
		FillsWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "waiting"})}
	m := New(Config{SourceAllow: loopbackAllow(), MaxFills: limit}, st, anyProgress(t), mx, quietLog())
	t.Cleanup(m.Close)
	return m, st, mx
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	return written(t, g).GetGauge().GetValue()
}

// within runs fn and fails the test when it does not return within d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	ended := make(chan struct{})
	go func() { fn(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(d):
		t.Fatalf("%s hangs", what)
	}
}

func checkGauges(t *testing.T, mx Metrics, running, waiting float64) {
	t.Helper()
	if r, w := gaugeValue(t, mx.Fills), gaugeValue(t, mx.FillsWaiting); r != running || w != waiting {
		t.Fatalf("fills running %v, waiting %v; want %v and %v", r, w, running, waiting)
	}
}

func startAsync(t *testing.T, m *Manager, src Source) (Started, chan Result) {
	t.Helper()
	done := make(chan Result, 1)
	st, err := m.Start(src, func(r Result) { done <- r })
	if err != nil {
		t.Fatalf("start %s: %v", src.TaskID, err)
	}
	return st, done
}

func result(t *testing.T, done chan Result) Result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("fill did not end")
	}
	return Result{}
}

// With a cap of K, K fills run and the next one waits: its registration is
// answered once the origin told the length (a one-byte Range request), with
// the piece size its pieces will have; the origin hears of its fill only
// once one of the K ended, and it then completes.
func TestFillCapHoldsTheNextFill(t *testing.T) {
	const k = 2
	o := newHeldOrigin(t, patterned(100))
	m, _, mx := newCappedManager(t, k)
	var dones []chan Result
	for i := range k {
		id := "f" + strconv.Itoa(i)
		_, done := startAsync(t, m, o.src(id))
		dones = append(dones, done)
		if got := o.next(5 * time.Second); got != "/"+id {
			t.Fatalf("origin got %q, want /%s", got, id)
		}
	}
	st, last := startAsync(t, m, o.src("late"))
	if got := o.next(300 * time.Millisecond); got != "" {
		t.Fatalf("origin got %s while %d fills ran: the cap did not hold the fill past it", got, k)
	}
	if st.HTTPFileLength != 100 || st.PieceSize != piece.DefaultSize || !m.Waiting("late") {
		t.Fatalf("the fill past the cap started as %+v (waiting %v), want length 100 and the default piece size",
			st, m.Waiting("late"))
	}
	checkGauges(t, mx, k, 1)
	o.let("/f0")
	if r := result(t, dones[0]); !r.OK {
		t.Fatalf("f0: %+v", r)
	}
	if got := o.next(5 * time.Second); got != "/late" {
		t.Fatalf("origin got %q once a fill ended, want /late", got)
	}
	checkGauges(t, mx, k, 0)
	o.let("/f1")
	o.let("/late")
	for i, done := range append(dones[1:], last) {
		if r := result(t, done); !r.OK || r.PieceTotal != 1 || r.FileLength != 100+piece.WrapSize {
			t.Fatalf("fill %d: %+v", i+1, r)
		}
	}
	if size, state := m.Servable("late", 0, 10); state != ServeOK || size != 100+piece.WrapSize {
		t.Fatalf("late fill servable %d, %d", size, state)
	}
	checkGauges(t, mx, 0, 0)
}

// A waiting fill with nobody left to download its file (Source.Wanted
// false) never asks the origin: at its turn it ends failed and passes the
// slot on, so the fill behind it runs; one still wanted reads its source.
func TestUnwantedWaitingFillSkipsItsTurn(t *testing.T) {
	o := newHeldOrigin(t, patterned(100))
	m, _, mx := newCappedManager(t, 1)
	_, running := startAsync(t, m, o.src("run"))
	if o.next(5*time.Second) != "/run" {
		t.Fatal("the first fill did not ask the origin")
	}
	var asked sync.WaitGroup
	asked.Add(1)
	left := o.src("left")
	left.Wanted = func() bool { asked.Done(); return false }
	kept := o.src("kept")
	kept.Wanted = func() bool { return true }
	_, leftDone := startAsync(t, m, left)
	_, keptDone := startAsync(t, m, kept)
	checkGauges(t, mx, 1, 2)
	o.let("/run")
	if r := result(t, running); !r.OK {
		t.Fatalf("run: %+v", r)
	}
	if got := o.next(5 * time.Second); got != "/kept" {
		t.Fatalf("origin got %q after the running fill, want /kept (the fill nobody wants skipped)", got)
	}
	asked.Wait()
	if r := result(t, leftDone); r.OK || !errors.Is(r.Err, errUnwanted) {
		t.Fatalf("unwanted fill: %+v, want failed with errUnwanted", r)
	}
	o.let("/kept")
	if r := result(t, keptDone); !r.OK {
		t.Fatalf("kept: %+v", r)
	}
	checkGauges(t, mx, 0, 0)
}

// A waiting fill whose task is dropped leaves the line at once, never asks
// the origin, and the next in line keeps its place; Close ends a running
// fill and the waiting ones promptly, leaving no goroutine behind.
func TestWaitingFillsLeaveOnDeleteAndClose(t *testing.T) {
	o := newHeldOrigin(t, patterned(100))
	m, _, mx := newCappedManager(t, 1)
	_, running := startAsync(t, m, o.src("run"))
	if o.next(5*time.Second) != "/run" {
		t.Fatal("the first fill did not ask the origin")
	}
	base := runtime.NumGoroutine()
	_, dropped := startAsync(t, m, o.src("dropped"))
	_, kept := startAsync(t, m, o.src("kept"))
	checkGauges(t, mx, 1, 2)
	var err error
	within(t, 2*time.Second, "Delete of a waiting fill", func() { err = m.Delete("dropped", false) })
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, dropped); r.OK || !errors.Is(r.Err, context.Canceled) || !strings.Contains(r.Err.Error(), "fill slot") {
		t.Fatalf("dropped fill: %+v", r)
	}
	checkGauges(t, mx, 1, 1)
	within(t, 5*time.Second, "Close with a fill waiting", m.Close)
	for name, done := range map[string]chan Result{"run": running, "kept": kept} {
		if r := result(t, done); r.OK {
			t.Fatalf("%s: completed after Close", name)
		}
	}
	if got := o.next(100 * time.Millisecond); got != "" {
		t.Fatalf("origin got %s from a fill that never had a slot", got)
	}
	checkGauges(t, mx, 0, 0)
	noGoroutinesLeft(t, m, base)
}

// A fill that waited for its turn reuses a complete cache of the task, of
// the piece size its registrations were given: into the file already
// installed, which ends complete.
func TestWaitingFillReusesTheCache(t *testing.T) {
	data := blake3Data()
	cached := newOriginT(t, data)
	o := newHeldOrigin(t, patterned(100))
	m, _, _ := newCappedManager(t, 1)
	src := Source{TaskID: "hit", RawURL: cached.URL + "/f", TaskURL: cached.URL + "/f"}
	if _, r := start(t, m, src); !r.OK {
		t.Fatalf("first fill: %+v", r)
	}
	if err := m.Delete("hit", false); err != nil {
		t.Fatal(err)
	}
	_, busy := startAsync(t, m, o.src("busy"))
	o.next(5 * time.Second)
	st, done := startAsync(t, m, src)
	if st.PieceSize != piece.DefaultSize || st.HTTPFileLength != int64(len(data)) || st.CacheHit {
		t.Fatalf("waiting fill started as %+v", st)
	}
	o.let("/busy")
	result(t, busy)
	r := result(t, done)
	wrapped := piece.WrappedLength(int64(len(data)), piece.DefaultSize)
	if !r.OK || r.PieceTotal != 3 || r.FileLength != wrapped {
		t.Fatalf("waiting fill of a cached file: %+v", r)
	}
	// The fill, the waiting fill's length probe, its conditional request.
	if ranges, statuses := cached.seen(t, 3); len(statuses) != 3 || statuses[2] != http.StatusNotModified || ranges[1] != "bytes=0-0" {
		t.Fatalf("origin answered %v to Ranges %q, want a 206 to the probe and a 304 last", statuses, ranges)
	}
	if size, state := m.Servable("hit", 0, 10); state != ServeOK || size != wrapped || m.Running("hit") {
		t.Fatalf("reused file servable %d, %d", size, state)
	}
	if d := m.PieceDigest("hit", 2); d.IsZero() {
		t.Fatal("reused file has no digest for its last piece")
	}
}

// A fill that waited keeps the piece size its registrations were given
// (the cache's), even where the source's length would give another: 4.5
// MiB in one 5 MiB piece, not two of 4 MiB.
func TestWaitingFillKeepsItsPieceSize(t *testing.T) {
	const pinned = piece.DefaultSize + 1<<20
	data := patterned(int(piece.ContentSize(piece.DefaultSize)) + 512<<10)
	origin := newOriginT(t, data)
	o := newHeldOrigin(t, patterned(100))
	m, st, _ := newCappedManager(t, 1)
	src := Source{TaskID: "pin", RawURL: origin.URL + "/f", TaskURL: origin.URL + "/f"}
	// A partial cache of the task, without a journal: not resumed, but its
	// piece size is the one a waiting fill announces.
	if err := st.WriteMeta(&store.Meta{TaskID: "pin", URL: src.TaskURL, PieceSize: pinned, HTTPFileLen: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	_, busy := startAsync(t, m, o.src("busy"))
	o.next(5 * time.Second)
	started, done := startAsync(t, m, src)
	if started.PieceSize != pinned {
		t.Fatalf("waiting fill announced piece size %d, want the cache's %d", started.PieceSize, pinned)
	}
	o.let("/busy")
	result(t, busy)
	r := result(t, done)
	if !r.OK || r.PieceTotal != 1 || r.FileLength != int64(len(data))+piece.WrapSize {
		t.Fatalf("waiting fill: %+v, want one piece of %d", r, pinned)
	}
	meta, err := st.ReadMeta("pin")
	if err != nil || meta.PieceSize != pinned {
		t.Fatalf("meta %+v, %v", meta, err)
	}
}

// A member is never made to wait on this supernode's line: a task whose
// fill waits is refused with an error frame, and the member reads the
// origin.
func TestServeMemberRefusesAWaitingFill(t *testing.T) {
	o := newHeldOrigin(t, patterned(100))
	m, _, _ := newCappedManager(t, 1)
	startAsync(t, m, o.src("busy"))
	o.next(5 * time.Second)
	startAsync(t, m, o.src("queued"))
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.ServeMember(ctx, "queued", &out, func() error { return nil }, 0)
	if err == nil || !strings.Contains(err.Error(), "waits for a fill slot") || ctx.Err() != nil {
		t.Fatalf("ServeMember of a waiting fill: %v (ctx %v)", err, ctx.Err())
	}
	if out.Len() < frameHead || !bytes.Contains(out.Bytes(), []byte("waits for a fill slot")) {
		t.Fatalf("no error frame: %q", out.Bytes())
	}
}

// The source pattern's probe answers the registration with the length; its
// read of the whole source waits for its turn like a fill.
func TestSourcePatternReadWaitsItsTurn(t *testing.T) {
	o := newHeldOrigin(t, patterned(100))
	m, _, mx := newCappedManager(t, 1)
	_, busy := startAsync(t, m, o.src("busy"))
	o.next(5 * time.Second)
	done := make(chan Result, 1)
	st, err := m.StartSource(o.src("src"), func(r Result) { done <- r })
	if err != nil || st.HTTPFileLength != 100 {
		t.Fatalf("StartSource: %+v, %v", st, err)
	}
	if got := o.next(300 * time.Millisecond); got != "" {
		t.Fatalf("origin got %s while the one slot was taken", got)
	}
	checkGauges(t, mx, 1, 1)
	o.let("/busy")
	result(t, busy)
	if got := o.next(5 * time.Second); got != "/src" {
		t.Fatalf("origin got %q, want the source read", got)
	}
	o.let("/src")
	if r := result(t, done); !r.OK || r.PieceTotal != 1 {
		t.Fatalf("source read: %+v", r)
	}
}
