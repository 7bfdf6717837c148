package cdn

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// version is one version of a source file and its validators ("" for none).
type version struct {
	data []byte
	etag string
	mod  string
}

func (v version) headers(w http.ResponseWriter) {
	if v.etag != "" {
		w.Header().Set("ETag", v.etag)
	}
	if v.mod != "" {
		w.Header().Set("Last-Modified", v.mod)
	}
}

// blindOrigin serves a file whose first GET stops after stallAt bytes and
// holds the connection, leaving a partial cache; later requests get
// answer, as from a source (or a proxy in front of it) that ignores
// If-Range. It records each request's Range.
type blindOrigin struct {
	*httptest.Server
	mu      sync.Mutex
	first   version
	stallAt int
	answer  http.HandlerFunc
	ranges  []string
}

func newBlindOrigin(t *testing.T, first version, stallAt int) *blindOrigin {
	o := &blindOrigin{first: first, stallAt: stallAt}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.ranges = append(o.ranges, r.Header.Get("Range"))
		answer := o.answer
		o.mu.Unlock()
		if answer != nil {
			answer(w, r)
			return
		}
		o.first.headers(w)
		w.Header().Set("Content-Length", strconv.Itoa(len(o.first.data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(o.first.data[:o.stallAt])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *blindOrigin) setAnswer(h http.HandlerFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.answer, o.ranges = h, nil
}

func (o *blindOrigin) asked() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.ranges...)
}

// ignoresIfRange answers a GET without Range with v whole, and one with
// Range bytes=a-b with 206, the Content-Range cr(a, b, len(v.data)) gives
// and the bytes it names: whatever If-Range says.
func ignoresIfRange(v version, cr func(a, b, total int) (int, int, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v.headers(w)
		var a, b int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err != nil {
			w.Header().Set("Content-Length", strconv.Itoa(len(v.data)))
			_, _ = w.Write(v.data)
			return
		}
		first, last, total := cr(a, b, len(v.data))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%s", first, last, total))
		w.Header().Set("Content-Length", strconv.Itoa(last-first+1))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(v.data[first : last+1])
	}
}

// cachedContent is the content of task id's cache file, unwrapped.
func cachedContent(t *testing.T, st *store.Store, id string) []byte {
	t.Helper()
	var got []byte
	for i, w := range wrappedPieces(t, st, id) {
		c, err := piece.Unwrap(w)
		if err != nil {
			t.Fatalf("piece %d: %v", i, err)
		}
		got = append(got, c...)
	}
	return got
}

func anyProgress(t *testing.T) *MockProgress {
	p := NewMockProgress(gomock.NewController(t))
	p.EXPECT().ResetCDN(gomock.Any()).AnyTimes()
	p.EXPECT().SetCDNPiece(gomock.Any(), gomock.Any()).AnyTimes()
	p.EXPECT().FinishCDN(gomock.Any(), gomock.Any(), gomock.Any()).AnyTimes()
	return p
}

// A resume goes on only when the source answers its Range with exactly
// the bytes asked for, of the cached file's length and version. A source
// that ignores If-Range after the file changed answers the Range from the
// new version: taken, the cache would hold the new file's tail as the
// whole file (another length) or old pieces followed by new ones (another
// ETag or Last-Modified, same length). Any such 206 drops the resume, and
// the file is fetched again whole with a plain GET: the cache holds one
// version, with its validators.
func TestResumeTakesOnlyTheRangeOfTheCachedVersion(t *testing.T) {
	cs := int(piece.ContentSize(piece.DefaultSize))
	mod := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	newMod := time.Now().UTC().Format(http.TimeFormat)
	v1 := version{data: bytes.Repeat([]byte("a"), 3*cs), etag: `"v1"`, mod: mod}
	asked := func(a, b, total int) (int, int, string) { return a, b, strconv.Itoa(total) }
	toItsEnd := func(a, _, total int) (int, int, string) { return a, total - 1, strconv.Itoa(total) }
	for name, tc := range map[string]struct {
		now     version
		cr      func(a, b, total int) (int, int, string)
		resumed bool // the 206 is taken: no second request
	}{
		"same version": {now: v1, cr: asked, resumed: true},
		"file grew": {now: version{data: bytes.Repeat([]byte("b"), 3*cs+500), etag: `"v2"`, mod: newMod},
			cr: toItsEnd},
		"file shrank": {now: version{data: bytes.Repeat([]byte("b"), 3*cs-500), etag: `"v2"`, mod: newMod},
			cr: toItsEnd},
		"other start": {now: v1, cr: func(a, b, total int) (int, int, string) { return a + 100, b, strconv.Itoa(total) }},
		"no total":    {now: v1, cr: func(a, b, _ int) (int, int, string) { return a, b, "*" }},
		"same length, other ETag": {now: version{data: bytes.Repeat([]byte("b"), 3*cs), etag: `"v2"`, mod: mod},
			cr: asked},
		"same length, other Last-Modified, no ETag": {now: version{data: bytes.Repeat([]byte("b"), 3*cs), mod: newMod},
			cr: asked},
	} {
		t.Run(name, func(t *testing.T) {
			o := newBlindOrigin(t, v1, 2*cs)
			m1, st := newManager(t, anyProgress(t), 0)
			src := Source{TaskID: "b1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
			interruptAfter(t, m1, src, 1)
			o.setAnswer(ignoresIfRange(tc.now, tc.cr))

			started, res := start(t, restarted(t, st, anyProgress(t)), src)
			want := []string{"bytes=" + strconv.Itoa(2*cs) + "-" + strconv.Itoa(3*cs-1)}
			if !tc.resumed {
				want = append(want, "")
			}
			if got := o.asked(); !slices.Equal(got, want) {
				t.Errorf("requests with Range %q, want %q", got, want)
			}
			if !res.OK || started.HTTPFileLength != int64(len(tc.now.data)) {
				t.Fatalf("started %+v, result %+v; want a fill of %d bytes", started, res, len(tc.now.data))
			}
			if !bytes.Equal(cachedContent(t, st, "b1"), tc.now.data) {
				t.Fatal("the cache file is not the source's current version")
			}
			meta, err := st.ReadMeta("b1")
			if err != nil {
				t.Fatal(err)
			}
			if meta.ETag != tc.now.etag || meta.LastModified != lastModifiedMillis(http.Header{"Last-Modified": {tc.now.mod}}) {
				t.Fatalf("meta validators %q, %d; want those of the version cached (%q, %s)", meta.ETag, meta.LastModified,
					tc.now.etag, tc.now.mod)
			}
		})
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// A source (or a proxy) that answers a GET without Range with 206 sends a
// part of the file: stored, it would be served as the whole file. The
// fetch fails with a source error that says so, at once or after a resume
// the same source answered with another range.
func TestPartialAnswerWithoutRangeFails(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 1000)
	part := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-99/1000")
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(data[:100])
	}
	o := httptest.NewServer(http.HandlerFunc(part))
	t.Cleanup(o.Close)
	m, st := newManager(t, anyProgress(t), 0)
	_, err := m.Start(Source{TaskID: "p1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}, func(r Result) {
		t.Errorf("the fill ran: %+v", r)
	})
	if !IsSourceError(err) || !strings.Contains(err.Error(), "answered 206 Partial Content: the request had no Range") {
		t.Fatalf("start: %v, want the source error of a 206 without Range", err)
	}
	if meta, err := st.ReadMeta("p1"); err == nil {
		t.Fatalf("meta written: %+v", meta)
	}

	// After a resume: the 206 to the Range is of another range, then the
	// plain GET is answered with 206 too.
	cs := int(piece.ContentSize(piece.DefaultSize))
	v1 := version{data: bytes.Repeat([]byte("a"), 3*cs), etag: `"v1"`}
	bo := newBlindOrigin(t, v1, 2*cs)
	m1, st := newManager(t, anyProgress(t), 0)
	src := Source{TaskID: "p2", RawURL: bo.URL + "/f", TaskURL: bo.URL + "/f"}
	done := make(chan Result, 1)
	if _, err := m1.Start(src, func(r Result) { done <- r }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); m1.PieceDigest("p2", 1).IsZero(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("piece 1 never written")
		}
	}
	m1.Close()
	<-done
	bo.setAnswer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-99/"+strconv.Itoa(len(v1.data)))
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(v1.data[:100])
	})
	_, err = restarted(t, st, anyProgress(t)).Start(src, func(r Result) { t.Errorf("the fill ran: %+v", r) })
	if !IsSourceError(err) || !strings.Contains(err.Error(), "answered 206 Partial Content: the request had no Range") {
		t.Fatalf("start after the resume: %v, want the source error of a 206 without Range", err)
	}
	if got := bo.asked(); len(got) != 2 || got[0] == "" || got[1] != "" {
		t.Fatalf("requests with Range %q, want the resume then one plain GET", got)
	}
	// The part of a version the source no longer vouches for is not
	// resumed again.
	if _, err := os.Stat(st.DataPath("p2") + ".journal"); !os.IsNotExist(err) {
		t.Fatalf("the dropped resume's journal is left: %v", err)
	}
}

// A task with the client's own Range is that range of the source: a 206
// is its content only with the Content-Range of that range.
func TestRangedTaskTakesItsRangeOnly(t *testing.T) {
	data := patterned(1000)
	for name, tc := range map[string]struct {
		rng, cr string // cr "" for an honest answer
		want    []byte // nil: the fetch fails
	}{
		"closed":               {rng: "bytes=10-19", want: data[10:20]},
		"open":                 {rng: "bytes=990-", want: data[990:]},
		"suffix":               {rng: "bytes=-5", want: data[995:]},
		"cut at the end":       {rng: "bytes=995-2000", want: data[995:]},
		"other start":          {rng: "bytes=10-19", cr: "bytes 0-9/1000"},
		"shorter":              {rng: "bytes=10-19", cr: "bytes 10-14/1000"},
		"open, not to the end": {rng: "bytes=990-", cr: "bytes 990-995/1000"},
		"open, no total":       {rng: "bytes=990-", cr: "bytes 990-999/*"},
		"suffix, other start":  {rng: "bytes=-5", cr: "bytes 990-994/1000"},
	} {
		t.Run(name, func(t *testing.T) {
			o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.cr == "" {
					http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
					return
				}
				var a, b int
				_, _ = fmt.Sscanf(tc.cr, "bytes %d-%d", &a, &b)
				w.Header().Set("Content-Range", tc.cr)
				w.Header().Set("Content-Length", strconv.Itoa(b-a+1))
				w.WriteHeader(http.StatusPartialContent)
				_, _ = w.Write(data[a : b+1])
			}))
			t.Cleanup(o.Close)
			m, st := newManager(t, anyProgress(t), 0)
			src := Source{TaskID: "r1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": tc.rng}}
			done := make(chan Result, 1)
			started, err := m.Start(src, func(r Result) { done <- r })
			if tc.want == nil {
				if !IsSourceError(err) || !strings.Contains(err.Error(), "Content-Range") {
					t.Fatalf("start: %+v, %v; want a source error about the Content-Range", started, err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res := <-done; !res.OK || started.HTTPFileLength != int64(len(tc.want)) {
				t.Fatalf("started %+v, result %+v", started, res)
			}
			if !bytes.Equal(cachedContent(t, st, "r1"), tc.want) {
				t.Fatal("the cache file is not the range's bytes")
			}
		})
	}
}
