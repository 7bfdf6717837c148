package cdn

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// A Last-Modified date is strong only when the answer's Date is at least a
// second later (RFC 9110 8.8.2.2); without a Date, or with one that does
// not parse, it is weak.
func TestStrongLastModified(t *testing.T) {
	lm := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	at := func(d time.Duration) string { return lm.Add(d).Format(http.TimeFormat) }
	for name, tc := range map[string]struct {
		lm, date string
		want     bool
	}{
		"no Date":               {lm: at(0), want: false},
		"Date equal":            {lm: at(0), date: at(0), want: false},
		"Date 1 s later":        {lm: at(0), date: at(time.Second), want: true},
		"Date a day later":      {lm: at(0), date: at(24 * time.Hour), want: true},
		"Date earlier":          {lm: at(0), date: at(-time.Second), want: false},
		"Date does not parse":   {lm: at(0), date: "yesterday", want: false},
		"no Last-Modified":      {date: at(time.Second), want: false},
		"Last-Modified garbled": {lm: "soon", date: at(time.Second), want: false},
	} {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			if tc.lm != "" {
				h.Set("Last-Modified", tc.lm)
			}
			if tc.date != "" {
				h.Set("Date", tc.date)
			}
			if got := strongLastModified(h); got != tc.want {
				t.Fatalf("strongLastModified(Last-Modified %q, Date %q) = %v, want %v", tc.lm, tc.date, got, tc.want)
			}
		})
	}
	// HTTP dates have no fraction of a second: the rule itself, below one.
	for d, want := range map[time.Duration]bool{0: false, 999 * time.Millisecond: false, time.Second: true, 1500 * time.Millisecond: true} {
		if got := strongAt(lm, lm.Add(d)); got != want {
			t.Errorf("strongAt(Date %v after) = %v, want %v", d, got, want)
		}
	}
}

// A meta written before the strength was recorded has no such key: its
// date is weak, so it neither validates nor resumes the cache, while its
// strong ETag still does both.
func TestOldMetaDateIsWeak(t *testing.T) {
	const ps = 1 << 20
	cs := int(piece.ContentSize(ps))
	mod := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).UnixMilli()
	for name, tc := range map[string]struct {
		finish bool
		etag   string
		want   map[string]string
	}{
		"complete, date only": {finish: true, want: map[string]string{}},
		"complete, with ETag": {finish: true, etag: `"e1"`, want: map[string]string{"If-None-Match": `"e1"`}},
		"partial, date only":  {want: map[string]string{}},
		"partial, with ETag":  {etag: `"e1"`, want: map[string]string{"Range": "bytes=" + strconv.Itoa(2*cs) + "-" + strconv.Itoa(3*cs-1), "If-Range": `"e1"`}},
		"partial, weak ETag":  {etag: `W/"e1"`, want: map[string]string{}},
		"complete, weak ETag": {finish: true, etag: `W/"e1"`, want: map[string]string{}},
	} {
		t.Run(name, func(t *testing.T) {
			m, st := newManager(t, nil, 0)
			meta := &store.Meta{TaskID: "t", URL: "http://o/f", PieceSize: ps, HTTPFileLen: 3 * int64(cs),
				Finish: tc.finish, Success: tc.finish, ETag: tc.etag, LastModified: mod}
			recs := writePieces(t, st, "t", ps, cs, 2)
			j, err := st.CreateJournal("t", journalKey(meta), recs)
			if err != nil {
				t.Fatal(err)
			}
			j.Close()
			// The meta as a supernode before the field wrote it.
			old := map[string]any{"taskID": "t", "url": "http://o/f", "pieceSize": ps, "httpFileLen": meta.HTTPFileLen,
				"bizId": "", "accessTime": 1, "interval": 0, "fileLength": 0, "md5": "", "realMd5": "",
				"lastModified": mod, "eTag": tc.etag, "finish": tc.finish, "success": tc.finish}
			b, err := json.Marshal(old)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(st.DataPath("t")+".meta", b, 0o644); err != nil {
				t.Fatal(err)
			}
			p := m.plan(Source{TaskID: "t", TaskURL: "http://o/f"}, nil)
			if p.meta == nil {
				t.Fatal("the old meta was not read as the task's")
			}
			if len(p.headers) != len(tc.want) {
				t.Fatalf("headers %v, want %v", p.headers, tc.want)
			}
			for k, v := range tc.want {
				if p.headers[k] != v {
					t.Fatalf("headers %v, want %v", p.headers, tc.want)
				}
			}
		})
	}
}

// sameSecondOrigin serves a file without ETag whose versions all carry one
// Last-Modified date, in answers whose Date is that same second: a file
// rewritten within the second it was first written, as a plain file server
// (http.ServeContent) serves it. Like one, it honours If-Range and
// If-Modified-Since by the date alone.
type sameSecondOrigin struct {
	*httptest.Server
	mu   sync.Mutex
	data []byte
	// stallAt, when set, makes the next GET without Range send only its
	// first stallAt bytes and hold the connection until the client goes.
	stallAt  int
	requests []http.Header
	statuses []int
}

func newSameSecondOrigin(t *testing.T, data []byte) *sameSecondOrigin {
	o := &sameSecondOrigin{data: data}
	mod := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		d, stall := o.data, o.stallAt
		if r.Header.Get("Range") == "" {
			o.stallAt = 0
		}
		o.mu.Unlock()
		rec := &recorder{ResponseWriter: w}
		w.Header().Set("Date", mod.Format(http.TimeFormat))
		if stall > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Last-Modified", mod.Format(http.TimeFormat))
			w.Header().Set("Content-Length", strconv.Itoa(len(d)))
			rec.WriteHeader(http.StatusOK)
			_, _ = w.Write(d[:stall])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		} else {
			http.ServeContent(rec, r, "", mod, bytes.NewReader(d))
		}
		o.mu.Lock()
		o.requests = append(o.requests, r.Header.Clone())
		o.statuses = append(o.statuses, rec.status)
		o.mu.Unlock()
	}))
	t.Cleanup(o.Close)
	return o
}

// rewrite replaces the file with data, keeping its date.
func (o *sameSecondOrigin) rewrite(data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.data = data
}

// seen waits until the origin recorded n requests and returns them and
// their statuses.
func (o *sameSecondOrigin) seen(t *testing.T, n int) ([]http.Header, []int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		o.mu.Lock()
		reqs, statuses := append([]http.Header(nil), o.requests...), append([]int(nil), o.statuses...)
		o.mu.Unlock()
		if len(reqs) >= n || time.Now().After(deadline) {
			return reqs, statuses
		}
	}
}

// A partial cache whose only validator is a weak date is not resumed: the
// file rewritten in that second would answer the Range (If-Range by the
// same date) with its new bytes after the old version's pieces. It is
// fetched whole.
func TestWeakDateDoesNotResume(t *testing.T) {
	cs := int(piece.ContentSize(piece.DefaultSize))
	v1, v2 := bytes.Repeat([]byte("a"), 3*cs), bytes.Repeat([]byte("b"), 3*cs)
	o := newSameSecondOrigin(t, v1)
	o.stallAt = 2 * cs
	m1, st := newManager(t, anyProgress(t), 0)
	src := Source{TaskID: "w1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	interruptAfter(t, m1, src, 1)
	if meta, err := st.ReadMeta("w1"); err != nil || meta.LastModified == 0 || meta.LastModifiedStrong {
		t.Fatalf("partial cache meta %+v (%v), want its date recorded weak", meta, err)
	}
	o.rewrite(v2)

	if _, res := start(t, restarted(t, st, anyProgress(t)), src); !res.OK {
		t.Fatalf("after the restart: %+v", res)
	}
	if got := cachedContent(t, st, "w1"); !bytes.Equal(got, v2) {
		t.Fatalf("the cache holds %d bytes of the old version and %d of the new, want the new one whole",
			bytes.Count(got, []byte("a")), bytes.Count(got, []byte("b")))
	}
	reqs, statuses := o.seen(t, 2)
	if len(reqs) != 2 || reqs[1].Get("Range") != "" || reqs[1].Get("If-Range") != "" || statuses[1] != http.StatusOK {
		t.Fatalf("second request Range %q If-Range %q answered %v, want a plain GET answered 200",
			reqs[1].Get("Range"), reqs[1].Get("If-Range"), statuses)
	}
}

// A complete cache whose only validator is a weak date is not revalidated:
// If-Modified-Since with that date gets a 304 from the file rewritten in
// the same second, and the old version would be served as it. It is
// fetched again.
func TestWeakDateDoesNotReuse(t *testing.T) {
	v1, v2 := bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 1000)
	o := newSameSecondOrigin(t, v1)
	m1, st := newManager(t, anyProgress(t), 0)
	src := Source{TaskID: "w2", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	if _, res := start(t, m1, src); !res.OK {
		t.Fatalf("first fill: %+v", res)
	}
	m1.Close()
	o.rewrite(v2)

	_, res := start(t, restarted(t, st, anyProgress(t)), src)
	if !res.OK || !bytes.Equal(cachedContent(t, st, "w2"), v2) {
		t.Fatalf("after the restart: %+v; the cache holds the old version, want the new one", res)
	}
	reqs, statuses := o.seen(t, 2)
	if len(reqs) != 2 || reqs[1].Get("If-Modified-Since") != "" || statuses[1] != http.StatusOK {
		t.Fatalf("second request If-Modified-Since %q answered %v, want a plain GET answered 200",
			reqs[1].Get("If-Modified-Since"), statuses)
	}
}

// A home that dies mid-file whose origin sent only a weak date: If-Range
// by that date would take the rest from a version rewritten in the same
// second, after the home's pieces of the old one. The home does not vouch
// for the date, so the asker has no validator and fails the fill, as
// without any; the next fill reads the origin whole.
func TestClusterFallbackWeakDateFails(t *testing.T) {
	n := 2*int(piece.ContentSize(piece.DefaultSize)) + 100
	v1, v2 := bytes.Repeat([]byte("a"), n), bytes.Repeat([]byte("b"), n)
	o := newSameSecondOrigin(t, v1)
	home, src := homeOf(t, o.URL)
	o.rewrite(v2)
	h := newHomeT(t, home, "t1", int64(n), "cut")
	asker, st := clusterManager(t, anyProgress(t), Metrics{})
	src.Via = strings.TrimPrefix(h.URL, "http://")
	_, res := start(t, asker, src)
	if res.OK {
		got := cachedContent(t, st, "t1")
		t.Fatalf("the fill completed across versions (%d bytes of the old, %d of the new)",
			bytes.Count(got, []byte("a")), bytes.Count(got, []byte("b")))
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "no strong validator") {
		t.Fatalf("failed with %v, want no strong validator", res.Err)
	}
	if reqs, _ := o.seen(t, 1); len(reqs) != 1 {
		t.Fatalf("the origin was asked %d times, want once (by the home)", len(reqs))
	}
	src.Via = ""
	if _, res := start(t, asker, src); !res.OK || !bytes.Equal(cachedContent(t, st, "t1"), v2) {
		t.Fatalf("the next fill: %+v, want the new version whole", res)
	}
}

// A home sends its Last-Modified only when it is strong, and says so; an
// asker resumes with a home's date only on that word (a home before it
// sends any date, unmarked), and with a strong ETag first.
func TestHomeValidators(t *testing.T) {
	mod := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	date := mod.Format(http.TimeFormat)
	for name, tc := range map[string]struct {
		etag      string
		strong    bool
		wantLM    string
		wantValid string
	}{
		"strong date":       {strong: true, wantLM: date, wantValid: date},
		"weak date":         {},
		"strong ETag":       {etag: `"e"`, wantValid: `"e"`},
		"weak ETag, strong": {etag: `W/"e"`, strong: true, wantLM: date, wantValid: date},
		"weak ETag, weak":   {etag: `W/"e"`},
	} {
		t.Run(name, func(t *testing.T) {
			m, st := newManager(t, nil, 0)
			if err := st.WriteMeta(&store.Meta{TaskID: "t", URL: "http://o/f", ETag: tc.etag, LastModified: mod.UnixMilli(),
				LastModifiedStrong: tc.strong}); err != nil {
				t.Fatal(err)
			}
			h := m.Validators("t")
			marked := h.Get(types.ClusterHeaderLastModifiedStrong) == "1"
			if h.Get("Last-Modified") != tc.wantLM || marked != (tc.wantLM != "") || h.Get("ETag") != tc.etag {
				t.Fatalf("home sends %v, want ETag %q and Last-Modified %q, marked strong", h, tc.etag, tc.wantLM)
			}
			if v, _ := homeValidator(h, marked); v != tc.wantValid {
				t.Fatalf("asker's If-Range %q, want %q", v, tc.wantValid)
			}
		})
	}
	// A home before the mark sends a date it may not know strong.
	old := http.Header{"Last-Modified": {date}}
	if v, _ := homeValidator(old, false); v != "" {
		t.Fatalf("an unmarked date gives If-Range %q, want none", v)
	}
}
