package cdn

import (
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

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// fullManager is a manager with one fill slot, which the test holds: every
// Start waits for its turn until release is called.
func fullManager(t *testing.T, cfg Config) (*Manager, Metrics, func()) {
	t.Helper()
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mx := Metrics{}
	cfg.MaxFills, cfg.SourceAllow = 1, loopbackAllow()
	m := New(cfg, st, anyProgress(t), mx, quietLog())
	t.Cleanup(m.Close)
	if !m.fills.Join().Granted() {
		t.Fatal("the one slot is taken")
	}
	var once sync.Once
	return m, m.metrics, func() { once.Do(m.fills.Release) }
}

// askedOrigin runs answer for every request and records the requests.
type askedOrigin struct {
	*httptest.Server
	mu  sync.Mutex
	got []*http.Request
}

func newAskedOrigin(t *testing.T, answer http.HandlerFunc) *askedOrigin {
	o := &askedOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.got = append(o.got, r.Clone(r.Context()))
		o.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *askedOrigin) requests() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.got...)
}

// partial answers the one-byte probe with the Content-Range total.
func partial(total string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-0/"+total)
		w.Header().Set("Content-Length", "1")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write([]byte{0})
	}
}

// whole ignores Range: a 200 of length bytes (none: chunked), of which only
// the first 4 KiB are sent before it waits for the client to go.
func whole(length int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if length >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 4<<10))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
}

// A fill that waits answers its registration with the length the source
// tells a one-byte request with the task's headers, and the piece size of
// that length: 300 MiB gets 5 MiB pieces, not the 4 MiB of an unknown
// length. A task with its own Range gets that range's length. An answer
// that tells no length leaves it unknown. The source is asked once, and
// not for the file.
func TestWaitingFillAnswersTheSourceLength(t *testing.T) {
	const big = 300 << 20
	cases := []struct {
		name      string
		answer    http.HandlerFunc
		userRange string
		want      int64
	}{
		{"206", partial(strconv.Itoa(big)), "", big},
		{"200 ignoring Range", whole(big), "", big},
		{"chunked 200", whole(-1), "", -1},
		{"206 of no total", partial("*"), "", -1},
		{"416 (empty file)", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Range", "bytes */0")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		}, "", -1},
		{"own Range, open", partial("1000"), "bytes=100-", 900},
		{"own Range, past the end", partial("1000"), "bytes=900-1999", 100},
		{"own Range, suffix", partial("1000"), "bytes=-10", 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newAskedOrigin(t, tc.answer)
			m, mx, _ := fullManager(t, Config{})
			src := Source{TaskID: "q", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"X-Auth": "secret"}}
			if tc.userRange != "" {
				src.Headers["Range"] = tc.userRange
			}
			st, done := startAsync(t, m, src)
			if st.HTTPFileLength != tc.want || st.PieceSize != piece.ComputeSize(tc.want) || !m.Waiting("q") {
				t.Fatalf("waiting fill answered %+v (waiting %v), want length %d and piece size %d",
					st, m.Waiting("q"), tc.want, piece.ComputeSize(tc.want))
			}
			got := o.requests()
			if len(got) != 1 {
				t.Fatalf("origin got %d requests, want the one probe", len(got))
			}
			if got[0].Header.Get("Range") != "bytes=0-0" || got[0].Header.Get("X-Auth") != "secret" {
				t.Fatalf("probe with Range %q and X-Auth %q, want bytes=0-0 and the task's header",
					got[0].Header.Get("Range"), got[0].Header.Get("X-Auth"))
			}
			checkGauges(t, mx, 1, 1)
			if err := m.Delete("q", false); err != nil {
				t.Fatal(err)
			}
			if r := result(t, done); r.OK {
				t.Fatalf("a deleted waiting fill completed: %+v", r)
			}
		})
	}
}

// A probe that fails says nothing about the fill's request only when it
// timed out (its bound is shorter than a fill's): the length is then
// unknown. A source that refuses the request, or cannot be reached, fails
// the registration as it fails a fill with a slot: no fill waits for it,
// and the line is left as it was.
func TestWaitingFillProbeFailure(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		o := newAskedOrigin(t, func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		m, mx, _ := fullManager(t, Config{SourceTimeout: 200 * time.Millisecond})
		begin := time.Now()
		st, _ := startAsync(t, m, Source{TaskID: "slow", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"})
		if took := time.Since(begin); took > 2*time.Second || st.HTTPFileLength != -1 || st.PieceSize != piece.DefaultSize {
			t.Fatalf("registration after a probe that timed out: %+v after %s, want length -1 within the bound", st, took)
		}
		if !m.Waiting("slow") {
			t.Fatal("the fill does not wait")
		}
		checkGauges(t, mx, 1, 1)
	})
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	refusals := []struct {
		name   string
		url    func(t *testing.T) string
		status int
	}{
		{"404", func(t *testing.T) string { return newAskedOrigin(t, http.NotFound).URL + "/f" }, http.StatusNotFound},
		{"401", func(t *testing.T) string {
			return newAskedOrigin(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }).URL
		}, http.StatusUnauthorized},
		{"connection refused", func(*testing.T) string { return gone.URL + "/f" }, 0},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			m, mx, release := fullManager(t, Config{})
			u := tc.url(t)
			_, err := m.Start(Source{TaskID: "no", RawURL: u, TaskURL: u}, func(Result) { t.Error("done called for a refused start") })
			var se *SourceError
			if !errors.As(err, &se) || se.Status != tc.status {
				t.Fatalf("start: %v, want a source error of status %d", err, tc.status)
			}
			if m.Waiting("no") || m.file("no") != nil {
				t.Fatal("a fill waits for a source that refused it")
			}
			checkGauges(t, mx, 1, 0)
			release()
			checkGauges(t, mx, 0, 0)
		})
	}
}

// swappedOrigin serves one version of its file to the probe and, from
// swap on, another, as a 200 (chunked when told to).
type swappedOrigin struct {
	*httptest.Server
	data    atomic.Pointer[[]byte]
	chunked atomic.Bool
}

func newSwappedOrigin(t *testing.T, first []byte) *swappedOrigin {
	o := &swappedOrigin{}
	o.data.Store(&first)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := *o.data.Load()
		if r.Header.Get("Range") != "" {
			partial(strconv.Itoa(len(data)))(w, r)
			return
		}
		if !o.chunked.Load() {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		_, _ = w.Write(data)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *swappedOrigin) swap(data []byte, chunked bool) {
	o.data.Store(&data)
	o.chunked.Store(chunked)
}

// A fill that waited and finds, at its turn, the source of another length
// than its registrations were given fails before it writes a piece: its
// clients count and check by the length they were given, and must never
// get pieces of the other file under it. Without a length told (chunked)
// the body is held to the one given: the same length completes, another
// fails.
func TestWaitingFillLengthChangedAtTurn(t *testing.T) {
	cases := []struct {
		name    string
		then    []byte
		chunked bool
		ok      bool
		err     string
	}{
		{"longer", patterned(120), false, false, errLengthChanged.Error()},
		{"shorter", patterned(80), false, false, errLengthChanged.Error()},
		{"chunked, same length", patterned(100), true, true, ""},
		{"chunked, shorter", patterned(80), true, false, "body ended at 80 of 100 bytes"},
		{"chunked, longer", patterned(120), true, false, "runs past its length of 100 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newSwappedOrigin(t, patterned(100))
			m, _, release := fullManager(t, Config{})
			src := Source{TaskID: "chg", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
			st, done := startAsync(t, m, src)
			if st.HTTPFileLength != 100 {
				t.Fatalf("waiting fill answered %+v, want length 100", st)
			}
			o.swap(tc.then, tc.chunked)
			release()
			r := result(t, done)
			if r.OK != tc.ok || (!tc.ok && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.err))) {
				t.Fatalf("fill at its turn: %+v, want ok %v, error %q", r, tc.ok, tc.err)
			}
			if tc.ok {
				if r.FileLength != 100+piece.WrapSize {
					t.Fatalf("fill: %+v", r)
				}
				return
			}
			if !IsSourceError(r.Err) {
				t.Fatalf("fill failed with %v, want a source error", r.Err)
			}
			if _, ok := m.PieceAt("chg", 0); ok && tc.err == errLengthChanged.Error() {
				t.Fatal("a piece of the other file was offered")
			}
		})
	}
}

// A member's fill that waits asks the task's home for the length, never
// the origin, which the member does not read either: the home's task info,
// with the cluster's token. A home that does not know the length, does not
// have the task, or cannot be reached leaves it unknown, and fails nothing.
func TestWaitingMemberFillAsksTheHome(t *testing.T) {
	const big = 300 << 20
	origin := newAskedOrigin(t, partial(strconv.Itoa(big)))
	cases := []struct {
		name string
		info *types.TaskInfo // nil: 404
		down bool
		want int64
	}{
		{"running", &types.TaskInfo{ID: "m", HTTPFileLength: big, CdnStatus: types.CDNStatusRunning}, false, big},
		{"done", &types.TaskInfo{ID: "m", HTTPFileLength: 7, CdnStatus: types.CDNStatusSuccess}, false, 7},
		{"unknown there", &types.TaskInfo{ID: "m", HTTPFileLength: -1, CdnStatus: types.CDNStatusRunning}, false, -1},
		{"failed there", &types.TaskInfo{ID: "m", HTTPFileLength: big, CdnStatus: types.CDNStatusFailed}, false, -1},
		{"another task", &types.TaskInfo{ID: "x", HTTPFileLength: big, CdnStatus: types.CDNStatusRunning}, false, -1},
		{"no task there", nil, false, -1},
		{"down", nil, true, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var auth atomic.Value
			home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				auth.Store(r.Header.Get("Authorization"))
				if tc.info == nil || r.Method != http.MethodGet || r.URL.Path != types.TaskInfoPath+"m" {
					http.NotFound(w, r)
					return
				}
				_ = json.NewEncoder(w).Encode(tc.info)
			}))
			defer home.Close()
			if tc.down {
				home.Close()
			}
			m, _, _ := fullManager(t, Config{Cluster: ClusterConfig{Token: "tok"}})
			src := Source{TaskID: "m", RawURL: origin.URL + "/f", TaskURL: origin.URL + "/f",
				Via: strings.TrimPrefix(home.URL, "http://")}
			st, _ := startAsync(t, m, src)
			if st.HTTPFileLength != tc.want || st.PieceSize != piece.ComputeSize(tc.want) {
				t.Fatalf("member's waiting fill answered %+v, want length %d", st, tc.want)
			}
			if a, _ := auth.Load().(string); !tc.down && a != "Bearer tok" {
				t.Fatalf("home asked with Authorization %q", a)
			}
			if n := len(origin.requests()); n != 0 {
				t.Fatalf("origin asked %d times for a task read from the home", n)
			}
		})
	}
}

// A complete cache of the task whose length is not the one the source now
// tells is not validated and reused (a source whose date did not move
// would answer 304, and the clients would get the old file under the new
// length): the waiting fill fetches the file whole.
func TestWaitingFillSkipsACacheOfAnotherLength(t *testing.T) {
	o := newOriginT(t, patterned(100))
	m, _, release := fullManager(t, Config{})
	src := Source{TaskID: "c", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	release()
	if _, r := start(t, m, src); !r.OK || r.FileLength != 100+piece.WrapSize {
		t.Fatalf("first fill: %+v", r)
	}
	if err := m.Delete("c", false); err != nil {
		t.Fatal(err)
	}
	if !m.fills.Join().Granted() {
		t.Fatal("the slot is taken")
	}
	o.data = patterned(120) // same Last-Modified: a conditional request gets 304
	st, done := startAsync(t, m, src)
	if st.HTTPFileLength != 120 {
		t.Fatalf("waiting fill answered %+v, want length 120", st)
	}
	m.fills.Release()
	if r := result(t, done); !r.OK || r.FileLength != 120+piece.WrapSize {
		t.Fatalf("waiting fill over a cache of 100 bytes: %+v, want the 120 bytes fetched", r)
	}
	if ranges, statuses := o.seen(t, 3); len(statuses) != 3 || statuses[2] != http.StatusOK || ranges[2] != "" {
		t.Fatalf("origin answered %v to Ranges %q, want the last a 200 to a plain GET", statuses, ranges)
	}
}
