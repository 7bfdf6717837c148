package cdn

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// rangeDeafOrigin answers every GET 200 with the whole file, as a source
// that ignores Range does: with a Content-Length, or chunked without one;
// hold keeps the connection open after the file until the client goes, so
// only a reader that stops by itself ends.
type rangeDeafOrigin struct {
	*httptest.Server
}

func newRangeDeafOrigin(t *testing.T, data []byte, sized, hold bool) *rangeDeafOrigin {
	o := &rangeDeafOrigin{}
	mod := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", mod)
		if sized {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		w.WriteHeader(http.StatusOK)
		for off := 0; off < len(data); off += 64 << 10 {
			if _, err := w.Write(data[off:min(off+64<<10, len(data))]); err != nil {
				return
			}
		}
		if hold {
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	t.Cleanup(o.Close)
	return o
}

// A task with the client's own Range whose source ignores Range and
// answers 200 with the whole file stores only the range, as a 206 would
// have given it: the bytes before it are skipped, the read stops after
// it, and the task's length is the range's. A suffix range of a 200
// without Content-Length cannot be placed without reading the file whole,
// and a range the body does not reach fails the fill.
func TestRangedTaskAnswered200(t *testing.T) {
	n := 2*int(piece.ContentSize(piece.DefaultSize)) + 100
	data := patterned(n)
	itoa := strconv.Itoa
	const refused, failed = "refused", "failed"
	for _, tc := range []struct {
		rng   string
		sized bool
		want  []byte // nil: refused or failed (fail)
		fail  string
	}{
		{rng: "bytes=100-199", sized: true, want: data[100:200]},
		{rng: "bytes=100-199", want: data[100:200]},
		{rng: "bytes=100-", sized: true, want: data[100:]},
		{rng: "bytes=100-", want: data[100:]},
		{rng: "bytes=-50", sized: true, want: data[n-50:]},
		{rng: "bytes=-" + itoa(2*n), sized: true, want: data},
		{rng: "bytes=100-" + itoa(n+500), sized: true, want: data[100:]}, // cut at the end, as a 206
		{rng: "bytes=0-0", want: data[:1]},
		{rng: "bytes=-50", fail: refused},
		{rng: "bytes=" + itoa(n) + "-", sized: true, fail: refused},
		{rng: "bytes=100-" + itoa(n+500), fail: failed}, // the body ends before the range's end
		{rng: "bytes=" + itoa(n+10) + "-", fail: failed},
		{rng: "bytes=" + itoa(n+10) + "-" + itoa(n+20), fail: failed},
	} {
		t.Run(tc.rng+" sized="+strconv.FormatBool(tc.sized), func(t *testing.T) {
			o := newRangeDeafOrigin(t, data, tc.sized, false)
			m, st := newManager(t, anyProgress(t), 0)
			src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": tc.rng}}
			done := make(chan Result, 1)
			started, err := m.Start(src, func(r Result) { done <- r })
			if tc.fail == refused {
				if err == nil || !IsSourceError(err) {
					t.Fatalf("start: %v; want a source error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			res := <-done
			if tc.fail == failed {
				if res.OK {
					t.Fatalf("fill of a range the body does not reach: %+v; want it failed", res)
				}
				return
			}
			if !res.OK {
				t.Fatalf("fill: %+v", res)
			}
			if got := cachedContent(t, st, "t1"); !bytes.Equal(got, tc.want) {
				t.Fatalf("cached %d bytes, want the range's %d (whole file is %d)", len(got), len(tc.want), n)
			}
			if tc.sized && started.HTTPFileLength != int64(len(tc.want)) {
				t.Errorf("started with length %d, want the range's %d", started.HTTPFileLength, len(tc.want))
			}
		})
	}
}

// The read of a ranged 200 stops after the range and closes the body: a
// source that keeps the connection open after the file (or a file far
// longer than the range) does not hold the fill.
func TestRangedTaskAnswered200StopsAfterTheRange(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	o := newRangeDeafOrigin(t, data, false, true)
	m, st := newManager(t, anyProgress(t), 0)
	m.cfg.SourceTimeout = time.Hour // no watchdog to end the read
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": "bytes=10-19"}}
	if _, res := start(t, m, src); !res.OK {
		t.Fatalf("fill: %+v", res)
	}
	if got := cachedContent(t, st, "t1"); string(got) != "0123456789" {
		t.Fatalf("cached %q", got)
	}
}

// A ranged 206 without Content-Length is as long as its Content-Range
// says: the task's length is known, and a body short of it fails the fill
// instead of being stored as the range.
func TestRanged206WithoutContentLength(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefgh"), 100)
	for _, tc := range []struct {
		name string
		send int // bytes of the range sent
		ok   bool
	}{{"whole range", 100, true}, {"short body", 50, false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", "bytes 100-199/800")
				w.WriteHeader(http.StatusPartialContent)
				w.(http.Flusher).Flush() // chunked: no Content-Length
				_, _ = w.Write(data[100 : 100+tc.send])
			}))
			t.Cleanup(o.Close)
			m, st := newManager(t, anyProgress(t), 0)
			src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": "bytes=100-199"}}
			started, res := start(t, m, src)
			if started.HTTPFileLength != 100 {
				t.Errorf("started with length %d, want the Content-Range's 100", started.HTTPFileLength)
			}
			if res.OK != tc.ok {
				t.Fatalf("fill of %d of the range's 100 bytes: %+v, want OK %v", tc.send, res, tc.ok)
			}
			if tc.ok && !bytes.Equal(cachedContent(t, st, "t1"), data[100:200]) {
				t.Fatal("cache is not the range")
			}
		})
	}
}

// A 200 answering the origin request after a home died is the whole file:
// for a task with its own Range, its range from the byte the home stopped
// at, up to the range's end (cut at the file's end, and of the member's
// length); never a suffix without the file's length.
func TestOriginAskWhole(t *testing.T) {
	for _, tc := range []struct {
		rng         string
		off, len    int64
		cl          int64
		same        bool
		skip, limit int64 // skip -1: refused
	}{
		{"bytes=100-199", 0, 100, 1000, false, 100, 100},
		{"bytes=100-199", 0, -1, -1, false, 100, 100},
		{"bytes=100-199", 10, 100, 1000, true, 110, 90},
		{"bytes=100-199", 10, 100, 1000, false, -1, 0}, // another version
		{"bytes=100-199", 10, 100, 150, true, -1, 0},   // a range of 50 bytes of this file
		{"bytes=100-", 0, -1, -1, false, 100, -1},
		{"bytes=100-", 10, 900, 1000, true, 110, 890},
		{"bytes=100-", 10, 900, -1, true, 110, 890},
		{"bytes=100-999", 0, 100, 200, false, 100, 100}, // cut at the end
		{"bytes=-100", 0, 100, 1000, false, 900, 100},
		{"bytes=-100", 10, 100, 1000, true, 910, 90},
		{"bytes=-100", 0, -1, -1, false, -1, 0},
		{"bytes=1000-", 0, -1, 1000, false, -1, 0},
		{"", 0, 1000, 1000, false, 0, -1},
		{"", 10, 1000, 1000, true, 10, -1},
		{"", 10, 1000, 900, true, -1, 0},
	} {
		src := Source{}
		if tc.rng != "" {
			src.Headers = map[string]string{"Range": tc.rng}
		}
		ask, err := newOriginAsk(src, tc.off, tc.len)
		if err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: http.StatusOK, ContentLength: tc.cl, Header: http.Header{}}
		skip, limit, err := ask.checkWhole(resp, tc.same)
		if (err != nil) != (tc.skip < 0) || (err == nil && (skip != tc.skip || limit != tc.limit)) {
			t.Errorf("Range %q at %d of %d, 200 of %d: skip %d, limit %d, err %v; want %d, %d", tc.rng, tc.off, tc.len, tc.cl,
				skip, limit, err, tc.skip, tc.limit)
		}
	}
}

// A task with its own Range read from a home that dies mid-file, whose
// origin ignores Range: the rest is the range of the origin's 200 (of the
// version the home read), skipped to the byte the home stopped at.
func TestClusterRangedTaskFallbackTo200(t *testing.T) {
	n := 2*int(piece.ContentSize(piece.DefaultSize)) + 100
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 13)
	}
	o := newRangeDeafOrigin(t, data, true, false)
	home, _ := clusterManager(t, anyProgress(t), Metrics{})
	rng := "bytes=100-" + strconv.Itoa(n-101)
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": rng}}
	if _, res := start(t, home, src); !res.OK {
		t.Fatalf("home: %+v", res)
	}
	want := data[100 : n-100]
	h := newHomeT(t, home, "t1", int64(len(want)), "cut")
	asker, st := clusterManager(t, anyProgress(t), Metrics{})
	src.Via = strings.TrimPrefix(h.URL, "http://")
	if _, res := start(t, asker, src); !res.OK {
		t.Fatalf("asker: %+v", res)
	}
	checkCache(t, st, want)
}

// The bytes a ranged 200 holds before the range are read as any: a slow
// source still sending them is not taken for a stalled one.
func TestRangedTaskAnswered200SkipIsProgress(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		// 10 x 40 ms: longer than the stall bound, never silent for it,
		// and 25 KB/s, above the minimum rate (minSourceRate).
		for off := 0; off < len(data); off += 1000 {
			_, _ = w.Write(data[off : off+1000])
			w.(http.Flusher).Flush()
			time.Sleep(40 * time.Millisecond)
		}
	}))
	t.Cleanup(o.Close)
	m, st := newManager(t, anyProgress(t), 0)
	m.cfg.SourceTimeout = 50 * time.Millisecond // a stall bound of 150 ms
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": "bytes=9990-9999"}}
	if _, res := start(t, m, src); !res.OK {
		t.Fatalf("fill: %+v", res)
	}
	if got := cachedContent(t, st, "t1"); string(got) != "0123456789" {
		t.Fatalf("cached %q", got)
	}
}
