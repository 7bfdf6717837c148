package downloader

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/pkg/httpidle/httpidletest"
)

// An origin that answers a several-range request (or sends one anyway)
// with multipart/byteranges: the MIME parts never become the output.
func TestSourceRefusesMultipartByteranges(t *testing.T) {
	data := strings.Repeat("0123456789", 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Honours whatever Range it is sent, multi-range included.
		http.ServeContent(w, r, "f", time.Time{}, strings.NewReader(data))
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "out")
	s := &BackSource{HTTP: srv.Client(), URL: srv.URL + "/f", Headers: map[string]string{"Range": "bytes=0-9,20-29"}}
	n, err := s.DownloadFile(context.Background(), out, "", nil)
	if err == nil || !strings.Contains(err.Error(), "multipart/byteranges") {
		t.Fatalf("multipart answer: %d bytes, err %v; want a multipart/byteranges error", n, err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Fatal("the multipart body was written as the output")
	}
	// One range is the documented case and works.
	s.Headers = map[string]string{"Range": "bytes=20-29"}
	if _, err := s.DownloadFile(context.Background(), out, "", nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != data[20:30] {
		t.Fatalf("single range gave %q", b)
	}
}

// With a user --header Range the answer must be that range. An origin that
// ignores Range answers 200 with the whole file: the range is cut out of
// it, as the supernode's CDN cuts it (skipped to the range's start, read
// for exactly its length, past the end cut at the end), both by the file
// mode and by a stream's fallback after P2P (the range's length known).
// A body that ends before the range does fails, as does a range starting
// at the file's end (a 206 origin answers 416) and a suffix range of a
// 200 whose length is unknown. A 206 must start where the range does, and
// come only to a Range; a suffix range is placed by the Content-Range's
// total.
func TestSourceUserRangeAnswer(t *testing.T) {
	data := strings.Repeat("abcdefghij", 10) // 100 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ignores":
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte(data))
		case "/unsized", "/short": // ignores Range; chunked, no Content-Length
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			if r.URL.Path == "/short" {
				_, _ = w.Write([]byte(data[:25]))
				return
			}
			_, _ = w.Write([]byte(data))
		case "/liar": // names and sends the file's first bytes for any range
			w.Header().Set("Content-Range", "bytes 0-9/100")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write([]byte(data[:10]))
		default:
			http.ServeContent(w, r, "f", time.Time{}, strings.NewReader(data))
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		path, rng string
		want      string // "" for an error
	}{
		{"/ignores", "bytes=20-29", data[20:30]},
		{"/ignores", "Bytes=20-29", data[20:30]},
		{"/ignores", "bytes=-5", data[95:]},
		{"/ignores", "bytes=-500", data},
		{"/ignores", "bytes=90-", data[90:]},
		{"/ignores", "bytes=95-199", data[95:]},
		{"/ignores", "bytes=100-", ""},
		{"/ignores", "", data},
		{"/unsized", "bytes=20-29", data[20:30]},
		{"/unsized", "bytes=90-", data[90:]},
		{"/unsized", "bytes=99-", data[99:]},
		{"/unsized", "bytes=100-", ""},
		{"/unsized", "bytes=-5", ""},
		{"/short", "bytes=20-29", ""},
		{"/short", "bytes=30-39", ""},
		{"/short", "bytes=30-", ""},
		{"/liar", "bytes=20-29", ""},
		{"/liar", "", ""},
		{"/f", "bytes=20-29", data[20:30]},
		{"/f", "bytes=-5", data[95:]},
		{"/f", "bytes=90-", data[90:]},
	} {
		hdr := map[string]string{}
		if tc.rng != "" {
			hdr["Range"] = tc.rng
		}
		s := &BackSource{HTTP: srv.Client(), URL: srv.URL + tc.path, Headers: hdr}
		var out strings.Builder
		_, err := s.Copy(context.Background(), &out, -1, nil)
		if tc.want == "" && err == nil || tc.want != "" && (err != nil || out.String() != tc.want) {
			t.Errorf("%s %q: %q, %v; want %q", tc.path, tc.rng, out.String(), err, tc.want)
		}
		t.Logf("%s %q: %v", tc.path, tc.rng, err)
	}
	// A stream's fallback after P2P wrote the head of the range.
	s := &BackSource{HTTP: srv.Client(), URL: srv.URL + "/ignores", Headers: map[string]string{"Range": "bytes=20-29"}}
	var stream strings.Builder
	if _, err := s.Copy(context.Background(), &stream, 10, nil); err != nil || stream.String() != data[20:30] {
		t.Errorf("stream of the range: %q, %v", stream.String(), err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := s.DownloadFile(context.Background(), out, "", nil); err != nil {
		t.Fatalf("file mode, range of a 200: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != data[20:30] {
		t.Errorf("file mode wrote %q for the range of a 200, want %q", b, data[20:30])
	}
	s.URL = srv.URL + "/short"
	out = filepath.Join(t.TempDir(), "out")
	if _, err := s.DownloadFile(context.Background(), out, "", nil); err == nil {
		t.Error("file mode took a 200 shorter than the range")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed range download left a file at the output path")
	}
}

// A stream that P2P wrote the head of goes on from the source only if the
// source's file has the stream's length: another length is another
// version, whose tail must not follow the head. An answer that states its
// size (Content-Length, or a 206's span to the user's Range) is refused
// before a byte is written; one that does not is cut at the stream's
// length and must end exactly there.
func TestSourceCopyRefusesOtherLength(t *testing.T) {
	const want = 100
	file := func(n int) string { return strings.Repeat("0123456789", 20)[:n] }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		if _, err := fmt.Sscanf(r.URL.Path, "/same/%d", &n); err == nil {
			http.ServeContent(w, r, "f", time.Time{}, strings.NewReader(file(n)))
			return
		}
		if _, err := fmt.Sscanf(r.URL.Path, "/unsized/%d", &n); err == nil {
			// Ignores Range, and a flush before the body drops its
			// Content-Length (a chunked 200).
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte(file(n)))
			return
		}
		if _, err := fmt.Sscanf(r.URL.Path, "/star/%d", &n); err == nil {
			// A 206 to the user's bytes=0-, total unknown ("*"),
			// chunked: only its span tells its size.
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/*", n-1))
			w.WriteHeader(http.StatusPartialContent)
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte(file(n)))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		path    string
		written int // bytes the source may write before failing
		ok      bool
	}{
		{"/same/100", 100, true},
		{"/same/101", 0, false},
		{"/same/99", 0, false},
		{"/star/100", 100, true},
		{"/star/120", 0, false},
		{"/unsized/100", 100, true},
		{"/unsized/120", 100, false}, // cut at the stream's end, never past it
		{"/unsized/95", 95, false},
	} {
		s := &BackSource{HTTP: srv.Client(), URL: srv.URL + tc.path}
		if strings.HasPrefix(tc.path, "/star/") {
			s.Headers = map[string]string{"Range": "bytes=0-"}
		}
		var out strings.Builder
		n, err := s.Copy(context.Background(), &out, want, nil)
		if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, ErrSourceChanged) || out.Len() != tc.written || int(n) != tc.written {
			t.Errorf("%s: wrote %d (n %d), err %v; want %d written, ok %v", tc.path, out.Len(), n, err, tc.written, tc.ok)
		}
		if out.String() != file(want)[:min(out.Len(), want)] {
			t.Errorf("%s: wrote bytes that are not the file's", tc.path)
		}
	}
}

// The bytes a back-source reads and drops (before a user range in a 200
// that is the whole file) take --locallimit's tokens as the kept ones do:
// a range near the end of a big file from an origin ignoring Range must
// not read the whole file at full speed.
func TestSourceSkipIsRateLimited(t *testing.T) {
	data := strings.Repeat("abcdefghij", 100) // 1000 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000") // ignores Range
		_, _ = w.Write([]byte(data))
	}))
	defer srv.Close()
	// A limiter that refills next to nothing: what the copy took from its
	// burst is what it counted.
	const burst = 1 << 20
	lim := xrate.NewLimiter(xrate.Limit(1e-9), burst)
	s := &BackSource{HTTP: srv.Client(), URL: srv.URL, Headers: map[string]string{"Range": "bytes=900-909"}, Limiter: lim}
	var out strings.Builder
	if _, err := s.Copy(context.Background(), &out, -1, nil); err != nil || out.String() != data[900:910] {
		t.Fatalf("range of a 200: %q, %v", out.String(), err)
	}
	if used := burst - int64(lim.Tokens()); used != 910 {
		t.Errorf("the limiter counted %d bytes, want 910 (900 skipped, 10 kept)", used)
	}
}

// TestSourceClientGivesUpOnStalledSource: an origin that sends part of the
// file and then nothing fails the download within the client's idle
// bound, where the download's own timeout (hours for a large file) would
// have held it, and leaves no file behind.
func TestSourceClientGivesUpOnStalledSource(t *testing.T) {
	srv := httpidletest.StalledOrigin(t, "head of the file", 1<<20)
	const idle = 200 * time.Millisecond
	hc, err := SourceClient(nil, false, false, idle)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	out := filepath.Join(t.TempDir(), "out")
	s := &BackSource{HTTP: hc, URL: srv.URL + "/f"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	n, err := s.DownloadFile(ctx, out, "", nil)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "the source sent nothing for 200ms") || ctx.Err() != nil || took > 10*idle {
		t.Fatalf("stalled source: %d bytes, err %v after %s (idle %s), want an error within the idle bound", n, err, took, idle)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Fatalf("left %d files behind: %v", len(ents), ents)
	}
}
