package cdn

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// bareOrigin serves its data with neither ETag nor Last-Modified; chunked
// sends it without a length and ignores Range.
type bareOrigin struct {
	*httptest.Server
	mu      sync.Mutex
	data    []byte
	chunked bool
	gets    int
}

func newBareOrigin(t *testing.T, data []byte, chunked bool) *bareOrigin {
	o := &bareOrigin{data: data, chunked: chunked}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		d := o.data
		o.gets++
		o.mu.Unlock()
		if !o.chunked {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(d))
			return
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // no Content-Length: chunked
		_, _ = w.Write(d)
	}))
	t.Cleanup(o.Close)
	return o
}

// A home that dies mid-file when the origin sent no validator: nothing
// can prove the rest the origin has now is of the version the home read,
// and the pieces already given were offered, so the fill fails without
// asking the origin again, be its new version of the same length, or of
// another when the length is unknown.
func TestClusterFallbackWithoutValidatorFails(t *testing.T) {
	n := 2*int(piece.ContentSize(piece.DefaultSize)) + 100
	for _, tc := range []struct {
		name    string
		chunked bool
		newLen  int
	}{
		{"same length", false, n},
		{"unknown length", true, n + 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newBareOrigin(t, bytes.Repeat([]byte("A"), n), tc.chunked)
			hp := NewMockProgress(gomock.NewController(t))
			home, _ := clusterManager(t, hp, Metrics{})
			expectRun(hp, "t1", 3)
			src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
			if _, res := start(t, home, src); !res.OK {
				t.Fatalf("home: %+v", res)
			}
			o.mu.Lock()
			o.data = bytes.Repeat([]byte("B"), tc.newLen)
			o.mu.Unlock()
			length := int64(n)
			if tc.chunked {
				length = -1
			}
			h := newHomeT(t, home, "t1", length, "cut")
			ap := NewMockProgress(gomock.NewController(t))
			ap.EXPECT().ResetCDN("t1")
			ap.EXPECT().SetCDNPiece("t1", gomock.Any()).AnyTimes()
			ap.EXPECT().FinishCDN("t1", gomock.Any(), gomock.Any()) // the result is checked below
			asker, _ := clusterManager(t, ap, Metrics{})
			src.Via = strings.TrimPrefix(h.URL, "http://")
			if _, res := start(t, asker, src); res.OK || res.Err == nil || !strings.Contains(res.Err.Error(), "no strong validator") {
				t.Fatalf("a fill resumed from the origin without a validator: %+v", res)
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.gets != 1 {
				t.Errorf("the origin was asked %d times, want once (by the home)", o.gets)
			}
		})
	}
}

// A task with the client's own Range whose home dies mid-file: the rest
// comes from the origin by that range moved forward past the bytes the
// home gave (a suffix range asked unmoved and skipped), with If-Range.
func TestClusterRangedTaskFallback(t *testing.T) {
	n := 2*int(piece.ContentSize(piece.DefaultSize)) + 100
	data := patterned(n)
	itoa := strconv.Itoa
	moved := itoa(100 + int(piece.ContentSize(piece.DefaultSize)))
	for _, tc := range []struct{ rng, resume string }{
		{"bytes=100-" + itoa(n-1), "bytes=" + moved + "-" + itoa(n-1)},
		{"bytes=100-", "bytes=" + moved + "-"},
		{"bytes=100-" + itoa(n+500), "bytes=" + moved + "-" + itoa(n+500)}, // past the end
		{"bytes=-" + itoa(n-100), "bytes=-" + itoa(n-100)},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			o := newOriginT(t, data)
			hp := NewMockProgress(gomock.NewController(t))
			home, _ := clusterManager(t, hp, Metrics{})
			expectRun(hp, "t1", 2)
			src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": tc.rng}}
			if _, res := start(t, home, src); !res.OK {
				t.Fatalf("home: %+v", res)
			}
			h := newHomeT(t, home, "t1", int64(n-100), "cut")
			ap := NewMockProgress(gomock.NewController(t))
			ap.EXPECT().ResetCDN("t1")
			ap.EXPECT().SetCDNPiece("t1", gomock.Any()).AnyTimes()
			ap.EXPECT().FinishCDN("t1", gomock.Any(), gomock.Any()) // the result is checked below
			asker, st := clusterManager(t, ap, Metrics{})
			src.Via = strings.TrimPrefix(h.URL, "http://")
			if _, res := start(t, asker, src); !res.OK || res.PieceTotal != 2 {
				t.Fatalf("asker failed where the origin could finish it: %+v", res)
			}
			checkCache(t, st, data[100:])
			ranges, statuses := originRequests(t, o, 2)
			o.mu.Lock()
			ifRange := o.ifRanges[1]
			o.mu.Unlock()
			if ranges[1] != tc.resume || statuses[1] != http.StatusPartialContent || ifRange == "" {
				t.Fatalf("resumed with Range %q If-Range %q (answered %d), want Range %q with If-Range", ranges[1], ifRange, statuses[1], tc.resume)
			}
		})
	}
}

// The origin's answer after a home failed is taken only if it is the
// member's file from the byte asked for: a 206 must start there and end
// where the file does, and a 200 is the rest only before any byte was
// given, or when the origin ignored Range on the same version.
func TestOriginAskCheck(t *testing.T) {
	for _, tc := range []struct {
		rng      string
		off, len int64
		status   int
		cr       string
		same     bool  // a 200 carries the home's validator
		skip     int64 // -1: refused
	}{
		{"", 10, 100, 206, "bytes 10-99/100", false, 0},
		{"", 10, 100, 206, "bytes 0-99/100", false, -1},
		{"", 10, 100, 206, "bytes 10-99/200", false, -1},
		{"", 10, 100, 206, "bytes 10-99/*", false, -1},
		{"", 10, -1, 206, "bytes 10-99/*", false, 0},
		{"", 10, -1, 206, "bytes 10-50/100", false, -1},
		{"", 0, 100, 206, "bytes 0-99/100", false, -1}, // no Range asked
		{"", 0, 100, 200, "", false, 0},
		{"", 10, 100, 200, "", true, 10},
		{"", 10, 100, 200, "", false, -1}, // changed
		{"bytes=100-199", 10, 100, 206, "bytes 110-199/1000", false, 0},
		{"bytes=100-199", 10, 100, 206, "bytes 110-150/1000", false, -1},
		{"bytes=100-199", 10, 100, 206, "bytes 10-99/1000", false, -1},
		{"bytes=100-199", 10, 100, 200, "", true, 110}, // the whole file: skipped to the range's byte 10
		{"bytes=100-199", 10, 100, 200, "", false, -1}, // changed
		{"bytes=100-199", 0, 100, 206, "bytes 100-199/1000", false, 0},
		{"bytes=100-", 10, 100, 206, "bytes 110-199/200", false, 0},
		{"bytes=100-", 10, 100, 206, "bytes 110-199/300", false, -1},
		{"bytes=100-999", 10, 100, 206, "bytes 110-199/200", false, 0}, // cut short by the end
		{"bytes=100-999", 10, 100, 206, "bytes 110-199/300", false, -1},
		{"bytes=100-199", 10, -1, 206, "bytes 110-199/*", false, 0},
		{"bytes=100-199", 10, -1, 206, "bytes 110-150/*", false, -1},
		{"bytes=-100", 10, 100, 206, "bytes 100-199/200", false, 10},
		{"bytes=-100", 10, 100, 206, "bytes 110-199/200", false, -1},
		{"bytes=-100", 10, 100, 206, "bytes 100-199/*", false, -1},
		{"bytes=-100", 10, 100, 206, "bytes 100-189/190", false, -1},
	} {
		src := Source{}
		if tc.rng != "" {
			src.Headers = map[string]string{"Range": tc.rng}
		}
		ask, err := newOriginAsk(src, tc.off, tc.len)
		if err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: tc.status, ContentLength: -1, Header: http.Header{}}
		if tc.cr != "" {
			resp.Header.Set("Content-Range", tc.cr)
		}
		var skip int64
		if tc.status == http.StatusOK {
			skip, _, err = ask.checkWhole(resp, tc.same)
		} else {
			skip, err = ask.checkPart(resp)
		}
		if (err != nil) != (tc.skip < 0) || (err == nil && skip != tc.skip) {
			t.Errorf("Range %q at %d of %d: %d %q: skip %d, err %v; want skip %d", tc.rng, tc.off, tc.len, tc.status, tc.cr, skip, err, tc.skip)
		}
	}
}

// A home that dies mid-file after the origin's file changed, at an origin
// that ignores If-Range (some object stores and proxies do): the origin
// answers the Range from its new version, with the new version's ETag.
// Taken, the asker's file would be the home's pieces of the old version
// followed by the new one's tail; as the CDN's own resume (plan.continues)
// does, a 206 carrying another validator than the home's is refused.
func TestClusterFallbackRefusesAnotherVersionsPart(t *testing.T) {
	n := 2*int(piece.ContentSize(piece.DefaultSize)) + 100
	mod := time.Now().Add(-time.Hour)
	var mu sync.Mutex
	data, etag := bytes.Repeat([]byte("A"), n), `"v1"`
	var rangeAnswers int
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		d, e := data, etag
		if r.Header.Get("Range") != "" {
			rangeAnswers++
		}
		mu.Unlock()
		w.Header().Set("ETag", e)
		r.Header.Del("If-Range") // this origin ignores it
		http.ServeContent(w, r, "", mod, bytes.NewReader(d))
	}))
	t.Cleanup(o.Close)
	home, src := homeOf(t, o.URL)
	mu.Lock()
	data, etag = bytes.Repeat([]byte("B"), n), `"v2"`
	mu.Unlock()
	h := newHomeT(t, home, "t1", int64(n), "cut")
	asker, st := clusterManager(t, anyProgress(t), Metrics{})
	src.Via = strings.TrimPrefix(h.URL, "http://")
	_, res := start(t, asker, src)
	mu.Lock()
	asked := rangeAnswers
	mu.Unlock()
	if asked != 1 {
		t.Fatalf("the origin was asked for a range %d times, want once (the resume after the home)", asked)
	}
	if res.OK {
		raw, _ := os.ReadFile(st.DataPath("t1"))
		t.Fatalf("the fill completed across versions (%d wrapped bytes, %d of them 'A', %d 'B')",
			len(raw), bytes.Count(raw, []byte("A")), bytes.Count(raw, []byte("B")))
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), `ETag "v2", the part before is of ETag "v1"`) {
		t.Fatalf("failed with %v, want the 206 refused for its ETag", res.Err)
	}
}
