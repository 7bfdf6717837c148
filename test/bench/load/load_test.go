package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

func TestPercentile(t *testing.T) {
	d := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if p := percentile(d, 50); p != 5 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(d, 99); p != 10 {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(nil, 99); p != 0 {
		t.Errorf("empty p99 = %v", p)
	}
}

// fakeSupernode hands out pieces 4 at a time after one wait, and checks
// that every piece is reported before it finishes a client.
type fakeSupernode struct {
	pieces int
	mu     sync.Mutex
	next   map[string]int // per client: next piece to hand out
	got    map[string]int // per client: pieces reported
	waited map[string]bool
}

func (f *fakeSupernode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	reply := func(v types.ResultInfo) { _ = json.NewEncoder(w).Encode(v) }
	switch r.URL.Path {
	case "/peer/registry":
		var req types.RegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.CID == "" || req.Port < 15000 {
			http.Error(w, "bad register", http.StatusInternalServerError)
			return
		}
		reply(types.ResultInfo{Code: types.CodeSuccess, Data: types.RegisterResponseData{
			TaskID: "t1", FileLength: int64(f.pieces)*15 - 5, PieceSize: 15}})
	case "/peer/task":
		cid := q.Get("srcCid")
		if !f.waited[cid] {
			f.waited[cid] = true
			w.Header().Set("Server-Timing", "hold;dur=1.0")
			reply(types.ResultInfo{Code: types.CodePeerWait})
			return
		}
		if f.got[cid] == f.pieces {
			reply(types.ResultInfo{Code: types.CodePeerFinish, Data: types.FinishData{}})
			return
		}
		var ps []types.PieceInfo
		for len(ps) < 4 && f.next[cid] < f.pieces {
			n := f.next[cid]
			ps = append(ps, types.PieceInfo{PieceNum: n, Range: fmt.Sprintf("%d-%d", n*15, n*15+14), CID: "cdnnode:x"})
			f.next[cid]++
		}
		reply(types.ResultInfo{Code: types.CodePeerContinue, Data: ps})
	case "/peer/piece/suc":
		if q.Get("dstCid") != "cdnnode:x" || q.Get("pieceRange") == "" {
			http.Error(w, "bad report", http.StatusInternalServerError)
			return
		}
		f.got[q.Get("cid")]++
		reply(types.ResultInfo{Code: types.CodeGetPieceReport})
	default:
		http.NotFound(w, r)
	}
}

func newDriver(ts *httptest.Server, r Rate) *driver {
	return &driver{addr: strings.TrimPrefix(ts.URL, "http://"), snIP: "127.0.0.1", selfIP: "127.0.0.1",
		rawURL: "http://127.0.0.1/x", rate: r, stop: make(chan struct{})}
}

func TestClientFollowsProtocol(t *testing.T) {
	f := &fakeSupernode{pieces: 10, next: map[string]int{}, got: map[string]int{}, waited: map[string]bool{}}
	ts := httptest.NewServer(f)
	defer ts.Close()
	d := newDriver(ts, Rate{Lo: 1e3, Hi: 2e3}) // 15 bytes: 7.5-15 ms a piece
	var wg sync.WaitGroup
	res := make([]clientResult, 5)
	for i := range res {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = d.client(context.Background(), i) }()
	}
	wg.Wait()
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("client %d: %v", i, r.err)
		}
		if r.pieces != 10 || r.pieceSize != 15 {
			t.Errorf("client %d: %d pieces of %d", i, r.pieces, r.pieceSize)
		}
		if len(r.suc) != 10 {
			t.Errorf("client %d reported %d pieces", i, len(r.suc))
		}
		// One held wait, then at least 3 rounds of pieces and the finish.
		if len(r.held) != 1 || len(r.task) < 4 {
			t.Errorf("client %d: %d held and %d other /peer/task calls, want 1 and >= 4", i, len(r.held), len(r.task))
		}
	}
	if d.failed.Load() != 0 || d.pieces.Load() != 50 {
		t.Errorf("%d failed requests, %d pieces", d.failed.Load(), d.pieces.Load())
	}
	for cid, n := range f.got {
		if n != 10 {
			t.Errorf("%s reported %d", cid, n)
		}
	}

	// A supernode error is a failed request and ends the client.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, strconv.Itoa(500), http.StatusInternalServerError)
	}))
	defer bad.Close()
	d2 := newDriver(bad, Rate{})
	if r := d2.client(context.Background(), 0); r.err == nil || d2.failed.Load() != 1 {
		t.Errorf("error not counted: %v, %d", r.err, d2.failed.Load())
	}
}

func TestWindowStopsClients(t *testing.T) {
	f := &fakeSupernode{pieces: 1000, next: map[string]int{}, got: map[string]int{}, waited: map[string]bool{}}
	ts := httptest.NewServer(f)
	defer ts.Close()
	// 1.5 s a piece: the fake hands out pieces without a running limit, so
	// a fast client launches all 1,000 at once; they must still be running
	// when the window ends.
	d := newDriver(ts, Rate{Lo: 10, Hi: 10})
	out := make(chan clientResult)
	go func() { out <- d.client(context.Background(), 0) }()
	time.Sleep(300 * time.Millisecond)
	close(d.stop)
	select {
	case r := <-out:
		if !errors.Is(r.err, errStopped) {
			t.Errorf("err = %v, want errStopped", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client did not stop")
	}
	if d.failed.Load() != 0 || d.aborted.Load() != 0 {
		t.Errorf("stopping counted %d failed, %d aborted", d.failed.Load(), d.aborted.Load())
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"0": {}, "200": {200e6, 200e6}, "100-400": {100e6, 400e6}} {
		if r, err := ParseRate(in); err != nil || r != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, r, err, want)
		}
	}
	for _, in := range []string{"", "x", "400-100", "-1"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	if d := (Rate{Lo: 1e6, Hi: 1e6}).time(2e6); d != 2*time.Second {
		t.Errorf("2 MB at 1 MB/s = %v", d)
	}
}

func TestHistogramQuantile(t *testing.T) {
	before := map[string]float64{`x_bucket{h="/a",le="1"}`: 10, `x_bucket{h="/a",le="2"}`: 10, `x_bucket{h="/a",le="+Inf"}`: 10}
	after := map[string]float64{
		`x_bucket{h="/a",le="1"}`: 60, `x_bucket{h="/a",le="2"}`: 100, `x_bucket{h="/a",le="+Inf"}`: 110,
		`x_bucket{h="/b",le="1"}`: 1000, `x_count{h="/a"}`: 5,
	}
	bs := histogram(after, before, "x", `h="/a"`)
	if len(bs) != 3 || bs[2].count != 100 {
		t.Fatalf("buckets %+v", bs)
	}
	if q := quantile(bs, 0.5); q != 1 {
		t.Errorf("p50 = %v, want 1", q)
	}
	if q := quantile(bs, 0.75); q != 1.625 {
		t.Errorf("p75 = %v, want 1.625", q)
	}
	if q := quantile(bs, 0.99); !math.IsInf(q, 1) {
		t.Errorf("p99 = %v, want +Inf", q)
	}
	if q := quantile(nil, 0.5); !math.IsNaN(q) {
		t.Errorf("empty = %v", q)
	}
}
