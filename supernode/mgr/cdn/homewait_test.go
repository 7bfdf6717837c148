package cdn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// countingOrigin serves data at every path and counts the reads of each
// path: GETs other than the one-byte length probe of a waiting fill.
type countingOrigin struct {
	*httptest.Server
	mu    sync.Mutex
	reads map[string]int
}

func newCountingOrigin(t *testing.T, data []byte) *countingOrigin {
	o := &countingOrigin{reads: map[string]int{}}
	mod := time.Now().Add(-time.Hour)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "bytes=0-0" {
			o.mu.Lock()
			o.reads[r.URL.Path]++
			o.mu.Unlock()
		}
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *countingOrigin) readsOf(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reads[path]
}

// memberT is a cluster member: a CDN manager behind the two routes another
// member asks, with the API's rules (supernode/server/cluster.go): a task
// it reads from a member, or whose fill waits for the asker's, is refused
// with code 409; one whose fill waits, with CodeClusterFillWaits; any
// other is made to exist with a fill reading the origin, and streamed.
// gate, when set, runs before a fetch makes its task exist.
type memberT struct {
	*httptest.Server
	m    *Manager
	st   *store.Store
	mx   Metrics
	self string
	gate func()
	// told counts the fetches told that the fill waits.
	told atomic.Int32

	mu    sync.Mutex
	tasks map[string]*memberTask
}

type memberTask struct {
	started Started
	done    chan struct{}
	res     Result
}

func newMemberT(t *testing.T, limit int, gate func()) *memberT {
	h := &memberT{gate: gate, tasks: map[string]*memberTask{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+types.ClusterFetchPath, h.fetch)
	mux.HandleFunc("GET "+types.TaskInfoPath+"{id}", h.info)
	h.Server = httptest.NewServer(mux)
	t.Cleanup(h.Close)
	h.self = strings.TrimPrefix(h.URL, "http://")
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h.st = st
	h.mx = Metrics{DownloadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "o"}),
		ClusterBytes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}),
		ClusterFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"}),
		FillsWaitingHome: prometheus.NewGauge(prometheus.GaugeOpts{Name: "h"})}
	h.m = New(Config{SourceAllow: loopbackAllow(), MaxFills: limit, Cluster: ClusterConfig{Self: h.self}}, st, anyProgress(t), h.mx, quietLog())
	h.m.homePoll = 20 * time.Millisecond
	t.Cleanup(h.m.Close)
	return h
}

func writeCode(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusConflict)
	_ = json.NewEncoder(w).Encode(types.ErrorResponse{Code: code, Message: msg})
}

func (h *memberT) fetch(w http.ResponseWriter, r *http.Request) {
	var ask types.ClusterFetchRequest
	if err := json.NewDecoder(r.Body).Decode(&ask); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := ask.TaskID
	if h.m.MemberOf(id) != "" {
		writeCode(w, http.StatusConflict, "read the origin")
		return
	}
	if h.gate != nil {
		h.gate()
	}
	if _, err := h.ensure(Source{TaskID: id, RawURL: ask.RawURL, TaskURL: ask.TaskURL}); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if h.m.Waiting(id) {
		h.told.Add(1)
		writeCode(w, types.CodeClusterFillWaits, "this supernode's fill of the task waits for a slot: wait for it")
		return
	}
	w.Header().Set(types.ClusterHeaderTaskID, id)
	w.Header().Set(types.ClusterHeaderFileLength, strconv.FormatInt(h.task(id).started.HTTPFileLength, 10))
	flush := func() error { return http.NewResponseController(w).Flush() }
	_ = h.m.ServeMember(r.Context(), id, w, flush, time.Duration(ask.KeepAliveMillis)*time.Millisecond)
}

// ensure starts the task's fill once, as the task manager does.
func (h *memberT) ensure(src Source) (*memberTask, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if mt := h.tasks[src.TaskID]; mt != nil {
		return mt, nil
	}
	mt := &memberTask{done: make(chan struct{})}
	st, err := h.m.Start(src, func(r Result) { mt.res = r; close(mt.done) })
	if err != nil {
		return nil, err
	}
	mt.started = st
	h.tasks[src.TaskID] = mt
	return mt, nil
}

func (h *memberT) task(id string) *memberTask {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tasks[id]
}

func (h *memberT) info(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	mt := h.task(id)
	if mt == nil {
		http.NotFound(w, r)
		return
	}
	info := types.TaskInfo{ID: id, HTTPFileLength: mt.started.HTTPFileLength, CdnStatus: types.CDNStatusRunning}
	select {
	case <-mt.done:
		info.CdnStatus = types.CDNStatusFailed
		if mt.res.OK {
			info.CdnStatus = types.CDNStatusSuccess
		}
	default:
		info.FillWaiting = h.m.Waiting(id)
	}
	_ = json.NewEncoder(w).Encode(info)
}

// homeResult is the result of the home's own fill of a task.
func (h *memberT) homeResult(t *testing.T, id string) Result {
	t.Helper()
	mt := h.task(id)
	if mt == nil {
		t.Fatalf("%s has no fill of %s", h.self, id)
	}
	select {
	case <-mt.done:
		return mt.res
	case <-time.After(10 * time.Second):
		t.Fatalf("the fill of %s on its home did not end", id)
	}
	return Result{}
}

// Two members, each with one fill slot, each the home of one task and the
// asker of the other's, asked at the same moment: each asker's fill holds
// its one slot when it asks the other member, whose own fill of the task
// must then wait. Each asker gives its slot back and waits for the home's
// fill; each home reads its file from the origin, each asker then reads
// it from the home, and all four fills finish: each file is read from the
// origin once. (An asker that reads the origin at the refusal reads each
// file a second time.)
func TestClusterHomesWaitingOnEachOther(t *testing.T) {
	data := patterned(300 << 10)
	o := newCountingOrigin(t, data)
	// The first fetch on each member waits for the other's: both askers'
	// fills then hold their member's one slot.
	var arrived sync.WaitGroup
	arrived.Add(2)
	var fetches atomic.Int32
	bothAsked := func() {
		if fetches.Add(1) <= 2 {
			arrived.Done()
			arrived.Wait()
		}
	}
	members := []*memberT{newMemberT(t, 1, bothAsked), newMemberT(t, 1, bothAsked)}
	ids := []string{"tA", "tB"} // ids[i]'s home is members[i]
	results := make([]chan Result, 2)
	for i := range members {
		asker, home := members[1-i], members[i]
		src := Source{TaskID: ids[i], RawURL: o.URL + "/" + ids[i], TaskURL: o.URL + "/" + ids[i],
			Via: home.self, HomeNow: func() string { return home.self }}
		results[i] = make(chan Result, 1)
		go func() {
			if _, err := asker.m.Start(src, func(r Result) { results[i] <- r }); err != nil {
				t.Errorf("%s on %s: %v", src.TaskID, asker.self, err)
				results[i] <- Result{Err: err}
			}
		}()
	}
	for i, home := range members {
		asker := members[1-i]
		if r := result(t, results[i]); !r.OK {
			t.Fatalf("%s on the asker: %+v", ids[i], r)
		}
		if r := home.homeResult(t, ids[i]); !r.OK {
			t.Fatalf("%s on its home: %+v", ids[i], r)
		}
		if got := cachedContent(t, asker.st, ids[i]); !bytes.Equal(got, data) {
			t.Fatalf("%s: the asker cached %d bytes, not the file", ids[i], len(got))
		}
		fromHome, fallbacks := counterValue(t, asker.mx.ClusterBytes), 0.0
		for _, reason := range []string{reasonRefused, reasonWaited, reasonUnreachable, reasonBroken} {
			fallbacks += counterValue(t, asker.mx.ClusterFallbacks.WithLabelValues(reason))
		}
		t.Logf("%s: read %d times from the origin; its home told %d fetch(es) its fill waits; the asker read %.0f bytes from the home, %.0f fallbacks",
			ids[i], o.readsOf("/"+ids[i]), home.told.Load(), fromHome, fallbacks)
		if home.told.Load() == 0 {
			t.Fatalf("%s: the home's fill never waited: the test did not make both slots busy", ids[i])
		}
		if n := o.readsOf("/" + ids[i]); n != 1 || fromHome != float64(len(data)) || fallbacks != 0 {
			t.Errorf("%s: read %d times from the origin, %.0f bytes from the home, %.0f fallbacks; want once, the file, none",
				ids[i], n, fromHome, fallbacks)
		}
	}
}

// fakeHome is a home whose fill of task "w" waits for a slot: every fetch
// is answered 409 with CodeClusterFillWaits (or, once refuse is set, with
// the other 409, "read the origin"), and the task's info is what info
// holds (nil: 404).
type fakeHome struct {
	*httptest.Server
	info    atomic.Pointer[types.TaskInfo]
	refuse  atomic.Bool
	fetches atomic.Int32
	polls   atomic.Int32
}

func newFakeHome(t *testing.T, length int64) *fakeHome {
	h := &fakeHome{}
	h.info.Store(&types.TaskInfo{ID: "w", HTTPFileLength: length, CdnStatus: types.CDNStatusRunning, FillWaiting: true})
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+types.ClusterFetchPath, func(w http.ResponseWriter, _ *http.Request) {
		h.fetches.Add(1)
		if h.refuse.Load() {
			writeCode(w, http.StatusConflict, "this supernode reads the task from x: read the origin")
			return
		}
		writeCode(w, types.CodeClusterFillWaits, "this supernode's fill of the task waits for a slot: wait for it")
	})
	mux.HandleFunc("GET "+types.TaskInfoPath+"{id}", func(w http.ResponseWriter, r *http.Request) {
		h.polls.Add(1)
		info := h.info.Load()
		if info == nil || r.PathValue("id") != info.ID {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(info)
	})
	h.Server = httptest.NewServer(mux)
	t.Cleanup(h.Close)
	return h
}

func (h *fakeHome) member() string { return strings.TrimPrefix(h.URL, "http://") }

// eventually fails the test when cond does not hold within 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5 s: %s", what)
		}
	}
}

// A fill whose home's fill waits gives its slot back and waits for it
// (clients see a waiting fill, a member asking for the task is told it
// waits), and stops waiting: for the origin when the home's task fails or
// is gone, the home does not answer or is no longer the home, or the bound
// passes; without reading anything when nobody wants the file any more,
// the task is dropped or the supernode closes.
func TestMemberFillWaitsForItsHome(t *testing.T) {
	data := patterned(100 << 10)
	for _, tc := range []struct {
		name   string
		end    func(m *Manager, h *fakeHome, wanted *atomic.Bool, moved *atomic.Value)
		origin int    // reads of the origin
		reason string // the fallback counted ("": none)
		err    error  // the fill's error when it reads nothing
	}{
		{"home task failed", func(_ *Manager, h *fakeHome, _ *atomic.Bool, _ *atomic.Value) {
			h.info.Store(&types.TaskInfo{ID: "w", CdnStatus: types.CDNStatusFailed})
		}, 1, reasonWaited, nil},
		{"home task gone", func(_ *Manager, h *fakeHome, _ *atomic.Bool, _ *atomic.Value) { h.info.Store(nil) }, 1, reasonWaited, nil},
		{"home unreachable", func(_ *Manager, h *fakeHome, _ *atomic.Bool, _ *atomic.Value) { h.Close() }, 1, reasonUnreachable, nil},
		{"home moved", func(_ *Manager, _ *fakeHome, _ *atomic.Bool, moved *atomic.Value) { moved.Store("10.0.0.9:8002") }, 1, reasonWaited, nil},
		{"bound", nil, 1, reasonWaited, nil},
		{"unwanted", func(_ *Manager, _ *fakeHome, wanted *atomic.Bool, _ *atomic.Value) { wanted.Store(false) }, 0, "", errUnwanted},
		{"deleted", func(m *Manager, _ *fakeHome, _ *atomic.Bool, _ *atomic.Value) { _ = m.Delete("w", false) }, 0, "", context.Canceled},
		{"closed", func(m *Manager, _ *fakeHome, _ *atomic.Bool, _ *atomic.Value) { m.Close() }, 0, "", context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newCountingOrigin(t, data)
			h := newFakeHome(t, int64(len(data)))
			m, _, mx := newCappedManager(t, 1)
			m.metrics.FillsWaitingHome = prometheus.NewGauge(prometheus.GaugeOpts{Name: "home"})
			m.metrics.ClusterFallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"})
			m.homePoll = 5 * time.Millisecond
			if tc.end == nil {
				m.homeWait = 300 * time.Millisecond
			}
			var wanted atomic.Bool
			wanted.Store(true)
			var moved atomic.Value
			moved.Store(h.member())
			src := Source{TaskID: "w", RawURL: o.URL + "/w", TaskURL: o.URL + "/w", Via: h.member(),
				Wanted: wanted.Load, HomeNow: func() string { return moved.Load().(string) }}
			began := time.Now()
			st, done := startAsync(t, m, src)
			if st.HTTPFileLength != int64(len(data)) {
				t.Fatalf("registration answered %+v, want the home's length %d", st, len(data))
			}
			eventually(t, "the fill polls its home", func() bool { return h.polls.Load() >= 3 })
			if !m.Waiting("w") || m.MemberOf("w") != h.member() || gaugeValue(t, m.metrics.FillsWaitingHome) != 1 {
				t.Fatalf("fill waiting for its home: Waiting %t, MemberOf %q, gauge %v",
					m.Waiting("w"), m.MemberOf("w"), gaugeValue(t, m.metrics.FillsWaitingHome))
			}
			checkGauges(t, mx, 0, 0) // its slot given back
			if size, state := m.Servable("w", 0, 10); state != ServeNotReady {
				t.Fatalf("piece server: %d, %d for a waiting fill", size, state)
			}
			if tc.end != nil {
				tc.end(m, h, &wanted, &moved)
			}
			r := result(t, done)
			if tc.err != nil && (r.OK || !errors.Is(r.Err, tc.err)) {
				t.Fatalf("fill: %+v, want failed with %v", r, tc.err)
			}
			if tc.err == nil && !r.OK {
				t.Fatalf("fill: %+v", r)
			}
			if n := o.readsOf("/w"); n != tc.origin {
				t.Fatalf("origin read %d times, want %d", n, tc.origin)
			}
			if tc.reason != "" && counterValue(t, m.metrics.ClusterFallbacks.WithLabelValues(tc.reason)) != 1 {
				t.Fatalf("no %s fallback counted", tc.reason)
			}
			if tc.end == nil && time.Since(began) < m.homeWait {
				t.Fatalf("the fill went to the origin after %s, before its bound %s", time.Since(began), m.homeWait)
			}
			if h.fetches.Load() != 1 || gaugeValue(t, m.metrics.FillsWaitingHome) != 0 || m.MemberOf("w") != "" {
				t.Fatalf("home asked for the file %d times, %v fills waiting for their home, MemberOf %q",
					h.fetches.Load(), gaugeValue(t, m.metrics.FillsWaitingHome), m.MemberOf("w"))
			}
		})
	}
}

// A fill that waited in its own line, then heard at its turn that its
// home's fill waits, gives its slot back at once (the fill behind it
// runs), and once the home's fill runs, takes the front of the line again,
// ahead of a fill that came after it.
func TestMemberFillBackFromItsHomeGoesFirst(t *testing.T) {
	o := newHeldOrigin(t, patterned(100))
	h := newFakeHome(t, 100)
	m, _, mx := newCappedManager(t, 1)
	m.homePoll = 5 * time.Millisecond
	_, busy := startAsync(t, m, o.src("busy"))
	if o.next(5*time.Second) != "/busy" {
		t.Fatal("the first fill did not ask the origin")
	}
	member := o.src("w")
	member.Via = h.member()
	_, waited := startAsync(t, m, member)
	_, later := startAsync(t, m, o.src("later"))
	checkGauges(t, mx, 1, 2)
	o.let("/busy")
	result(t, busy)
	// The member fill's turn: its home says its fill waits, and the slot
	// goes to the fill behind it.
	if got := o.next(5 * time.Second); got != "/later" {
		t.Fatalf("origin got %q once the first fill ended, want /later (the slot given back)", got)
	}
	if h.fetches.Load() != 1 || !m.Waiting("w") {
		t.Fatalf("home asked %d times, member fill waiting %t", h.fetches.Load(), m.Waiting("w"))
	}
	_, third := startAsync(t, m, o.src("third"))
	checkGauges(t, mx, 1, 1)
	// The home's fill runs: the member fill comes back ahead of /third,
	// and this time is told to read the origin.
	h.refuse.Store(true)
	h.info.Store(&types.TaskInfo{ID: "w", HTTPFileLength: 100, CdnStatus: types.CDNStatusRunning})
	eventually(t, "the member fill back in line", func() bool { return gaugeValue(t, mx.FillsWaiting) == 2 })
	o.let("/later")
	result(t, later)
	if got := o.next(5 * time.Second); got != "/w" {
		t.Fatalf("origin got %q after /later, want /w (the fill back from its home first)", got)
	}
	o.let("/w")
	if r := result(t, waited); !r.OK {
		t.Fatalf("member fill: %+v", r)
	}
	o.let("/third")
	if r := result(t, third); !r.OK {
		t.Fatalf("third: %+v", r)
	}
	checkGauges(t, mx, 0, 0)
}

// Only the home's "my fill waits" makes a fill wait: the other 409, and
// an older home's, which never carries the code, send it to the origin at
// once, as before.
func TestOtherConflictReadsTheOrigin(t *testing.T) {
	data := patterned(100)
	o := newCountingOrigin(t, data)
	h := newFakeHome(t, 100)
	h.refuse.Store(true)
	m, _, _ := newCappedManager(t, 1)
	m.metrics.ClusterFallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"})
	_, done := startAsync(t, m, Source{TaskID: "w", RawURL: o.URL + "/w", TaskURL: o.URL + "/w", Via: h.member()})
	if r := result(t, done); !r.OK || o.readsOf("/w") != 1 || h.polls.Load() != 0 ||
		counterValue(t, m.metrics.ClusterFallbacks.WithLabelValues(reasonRefused)) != 1 {
		t.Fatalf("fill %+v: origin read %d times, home polled %d times", r, o.readsOf("/w"), h.polls.Load())
	}
	for _, body := range []string{`{"code":409,"message":"read the origin"}`, "reading it from you\n", `{"code":4091`} {
		if fillWaits([]byte(body)) {
			t.Errorf("%q taken for the home's fill waiting", body)
		}
	}
}
