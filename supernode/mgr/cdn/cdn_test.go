package cdn

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

type originT struct {
	*httptest.Server
	data     []byte
	mu       sync.Mutex
	statuses []int
	ranges   []string
	ifRanges []string
	// stallAt, when set, makes the next whole-file GET send only its first
	// stallAt bytes and hold the connection until the client goes.
	stallAt int
}

func newOriginT(t *testing.T, data []byte) *originT {
	o := &originT{data: data}
	mod := time.Now().Add(-time.Hour)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		o.mu.Lock()
		stall := o.stallAt
		if r.Header.Get("Range") == "" {
			o.stallAt = 0
		}
		o.mu.Unlock()
		switch {
		case r.URL.Path == "/missing":
			http.NotFound(rec, r)
		case stall > 0 && r.Header.Get("Range") == "":
			rec.Header().Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
			rec.Header().Set("Content-Length", strconv.Itoa(len(o.data)))
			rec.WriteHeader(http.StatusOK)
			_, _ = rec.Write(o.data[:stall])
			rec.ResponseWriter.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.ServeContent(rec, r, "", mod, bytes.NewReader(o.data))
		}
		o.mu.Lock()
		o.statuses = append(o.statuses, rec.status)
		o.ranges = append(o.ranges, r.Header.Get("Range"))
		o.ifRanges = append(o.ifRanges, r.Header.Get("If-Range"))
		o.mu.Unlock()
	}))
	t.Cleanup(o.Close)
	return o
}

// seen waits until the origin has recorded n requests (a handler records
// its request after the body is sent) and returns their Range headers and
// statuses.
func (o *originT) seen(t *testing.T, n int) ([]string, []int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		o.mu.Lock()
		if len(o.ranges) >= n || time.Now().After(deadline) {
			defer o.mu.Unlock()
			return append([]string(nil), o.ranges...), append([]int(nil), o.statuses...)
		}
		o.mu.Unlock()
	}
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(c int) { r.status = c; r.ResponseWriter.WriteHeader(c) }

func newManager(t *testing.T, p Progress, limit int64) (*Manager, *store.Store) {
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := New(Config{Limit: limit, SourceAllow: loopbackAllow()}, st, p, Metrics{}, log)
	t.Cleanup(m.Close)
	return m, st
}

func start(t *testing.T, m *Manager, src Source) (Started, Result) {
	t.Helper()
	done := make(chan Result, 1)
	st, err := m.Start(src, func(r Result) { done <- r })
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	select {
	case r := <-done:
		return st, r
	case <-time.After(20 * time.Second):
		t.Fatal("cdn did not finish")
	}
	return st, Result{}
}

func expectRun(p *MockProgress, id string, pieces int) {
	p.EXPECT().ResetCDN(id)
	for i := range pieces {
		p.EXPECT().SetCDNPiece(id, i)
	}
	p.EXPECT().FinishCDN(id, pieces, true)
}

func TestFetchWritesWrappedPiecesAndSidecars(t *testing.T) {
	data := patterned(2*int(piece.ContentSize(piece.DefaultSize)) + 100)
	o := newOriginT(t, data)
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	expectRun(p, "t1", 3)
	started, res := start(t, m, Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"})
	// No md5 expected: the fill computes none; the whole-file md5 comes on
	// demand, from the file.
	sum := md5.Sum(data)
	if !res.OK || res.RealMd5 != "" || res.PieceTotal != 3 || res.FileLength != int64(len(data))+15 {
		t.Fatalf("result %+v", res)
	}
	if got, err := m.FileMd5(context.Background(), "t1"); err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("FileMd5 = %q, %v", got, err)
	}
	if started.HTTPFileLength != int64(len(data)) || started.PieceSize != piece.DefaultSize {
		t.Fatalf("started %+v", started)
	}
	raw, err := os.ReadFile(st.DataPath("t1"))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i := range 3 {
		end := min(int64(i+1)*int64(piece.DefaultSize), int64(len(raw)))
		w := raw[int64(i)*int64(piece.DefaultSize) : end]
		c, err := piece.Unwrap(w)
		if err != nil {
			t.Fatalf("piece %d: %v", i, err)
		}
		if m.PieceMd5("t1", i) != piece.Md5Value(w) {
			t.Fatalf("piece %d md5 %s", i, m.PieceMd5("t1", i))
		}
		got = append(got, c...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	meta, err := st.ReadMeta("t1")
	if err != nil || !meta.Finish || !meta.Success || meta.LastModified == 0 || meta.HTTPFileLen != int64(len(data)) ||
		meta.RealMd5 != hex.EncodeToString(sum[:]) {
		t.Fatalf("meta %+v %v", meta, err)
	}
	// Every piece md5 was asked for once: the .md5 sidecar has them all.
	md5s, err := st.ReadMd5("t1", meta.Blake3)
	if err != nil || len(md5s) != 3 || md5s[2] != m.PieceMd5("t1", 2) {
		t.Fatalf(".md5: %v %v", md5s, err)
	}
	if size, state := m.Servable("t1", 0, 10); state != ServeOK || size != res.FileLength {
		t.Fatalf("servable %d %d", size, state)
	}

	// A second start of the same task: 304 -> full hit, no body read.
	p.EXPECT().ResetCDN("t1")
	for i := range 3 {
		p.EXPECT().SetCDNPiece("t1", i)
	}
	p.EXPECT().FinishCDN("t1", 3, true)
	started, res2 := start(t, m, Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"})
	if !started.CacheHit || !res2.OK || res2.RealMd5 != hex.EncodeToString(sum[:]) {
		t.Fatalf("cache hit: %+v %+v", started, res2)
	}
	if o.statuses[0] != 200 || o.statuses[1] != 304 || len(o.statuses) != 2 {
		t.Fatalf("origin statuses %v", o.statuses)
	}
}

// A partial cache written before resume journals (here: a complete fill
// made to look half-fetched, so no journal is left) is not resumed: its
// pieces are whole in structure, but nothing vouches for their bytes. It
// is fetched from the start, and right.
func TestNoResumeWithoutJournal(t *testing.T) {
	cs := int(piece.ContentSize(piece.DefaultSize))
	data := bytes.Repeat([]byte("abcdefgh"), (3*cs+5)/8+1)
	o := newOriginT(t, data)
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	expectRun(p, "t2", 4)
	src := Source{TaskID: "t2", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Md5: piece.Md5Hex(data)}
	_, res := start(t, m, src)
	meta, _ := st.ReadMeta("t2")
	meta.Finish, meta.Success = false, false
	if err := st.WriteMeta(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(st.DataPath("t2"), 2*int64(piece.DefaultSize)+7); err != nil {
		t.Fatal(err)
	}
	expectRun(p, "t2", 4)
	_, res2 := start(t, m, src)
	if !res2.OK || res2.RealMd5 != piece.Md5Hex(data) || res2.FileLength != res.FileLength {
		t.Fatalf("refetched %+v, want %+v", res2, res)
	}
	if ranges, statuses := o.seen(t, 2); len(ranges) != 2 || ranges[1] != "" || statuses[1] != 200 {
		t.Fatalf("requests with Range %q, statuses %v; want the second a whole GET", ranges, statuses)
	}
}

func TestFailures(t *testing.T) {
	o := newOriginT(t, []byte("hello"))
	p := NewMockProgress(gomock.NewController(t))
	m, _ := newManager(t, p, 0)
	p.EXPECT().ResetCDN(gomock.Any()).AnyTimes()
	_, err := m.Start(Source{TaskID: "t3", RawURL: o.URL + "/missing"}, func(Result) { t.Error("done called on a failed start") })
	var se *SourceError
	if !errors.As(err, &se) || se.Status != 404 {
		t.Fatalf("404: %v", err)
	}
	// md5 mismatch: the task fails after the fetch.
	p.EXPECT().SetCDNPiece("t4", 0)
	p.EXPECT().FinishCDN("t4", 0, false)
	_, res := start(t, m, Source{TaskID: "t4", RawURL: o.URL + "/f", Md5: "00000000000000000000000000000000"})
	if res.OK || res.Err == nil {
		t.Fatalf("md5 mismatch accepted: %+v", res)
	}
	if _, state := m.Servable("t4", 0, 1); state != ServeNotFound {
		t.Fatalf("failed task servable: %d", state)
	}
	if _, err := m.Start(Source{TaskID: "t5", RawURL: "http://127.0.0.1:1/x"}, func(Result) {}); !IsSourceError(err) {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestBandwidthLimit(t *testing.T) {
	data := make([]byte, 1<<20)
	o := newOriginT(t, data)
	p := NewMockProgress(gomock.NewController(t))
	m, _ := newManager(t, p, 512<<10)
	expectRun(p, "t6", 1)
	begin := time.Now()
	_, res := start(t, m, Source{TaskID: "t6", RawURL: o.URL + "/f"})
	// 1 MiB at 512 KiB/s with a 512 KiB burst: at least ~1 s.
	if !res.OK || time.Since(begin) < 900*time.Millisecond {
		t.Fatalf("limited fetch took %s (%+v)", time.Since(begin), res)
	}
}

func TestStalledSourceFails(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("some bytes"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	p := NewMockProgress(gomock.NewController(t))
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := New(Config{SourceTimeout: 100 * time.Millisecond, SourceAllow: loopbackAllow()}, st, p, Metrics{}, log)
	defer m.Close()
	p.EXPECT().ResetCDN("t7")
	p.EXPECT().FinishCDN("t7", 0, false)
	begin := time.Now()
	_, res := start(t, m, Source{TaskID: "t7", RawURL: srv.URL + "/f"})
	if res.OK || !IsSourceError(res.Err) || time.Since(begin) > 5*time.Second {
		t.Fatalf("stalled source: %+v after %s", res, time.Since(begin))
	}
}

func TestShortBodyNeverReady(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 50000)) // the handler returns: the connection closes early
	}))
	defer srv.Close()
	p := NewMockProgress(gomock.NewController(t)) // strict: no SetCDNPiece expected
	m, _ := newManager(t, p, 0)
	p.EXPECT().ResetCDN("t8")
	p.EXPECT().FinishCDN("t8", 0, false)
	_, res := start(t, m, Source{TaskID: "t8", RawURL: srv.URL + "/f"})
	if res.OK || !IsSourceError(res.Err) {
		t.Fatalf("short body: %+v", res)
	}
	if _, state := m.Servable("t8", 0, 10); state != ServeNotFound {
		t.Fatalf("short piece servable: %d", state)
	}
}

// patterned is n bytes of a pattern that differs from one byte to the
// next, so a piece read from the wrong offset shows.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}
