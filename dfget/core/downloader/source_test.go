package downloader

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
// ignores Range answers 200 with the whole file: neither the file mode
// (whose output would be the whole file) nor a stream continued after P2P
// (whose bytes would come from the file's start, not the range's) takes
// it. A 206 must start where the range does; a suffix range is placed by
// the Content-Range's total.
func TestSourceUserRangeAnswer(t *testing.T) {
	data := strings.Repeat("abcdefghij", 10) // 100 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ignores":
			w.Header().Set("Content-Length", "100")
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
		off       int64
		want      string // "" for an error
	}{
		{"/ignores", "bytes=20-29", 0, ""},
		{"/ignores", "bytes=20-29", 3, ""},
		{"/ignores", "bytes=-5", 2, ""},
		{"/ignores", "", 7, data[7:]},
		{"/liar", "bytes=20-29", 3, ""},
		{"/liar", "", 7, ""},
		{"/f", "bytes=20-29", 0, data[20:30]},
		{"/f", "Bytes=20-29", 3, data[23:30]},
		{"/f", "bytes=-5", 2, data[97:]},
		{"/f", "bytes=90-", 4, data[94:]},
	} {
		hdr := map[string]string{}
		if tc.rng != "" {
			hdr["Range"] = tc.rng
		}
		s := &BackSource{HTTP: srv.Client(), URL: srv.URL + tc.path, Headers: hdr}
		var out strings.Builder
		_, err := s.Copy(context.Background(), &out, tc.off, nil)
		if tc.want == "" && err == nil || tc.want != "" && (err != nil || out.String() != tc.want) {
			t.Errorf("%s %q from %d: %q, %v; want %q", tc.path, tc.rng, tc.off, out.String(), err, tc.want)
		}
		t.Logf("%s %q from %d: %v", tc.path, tc.rng, tc.off, err)
	}
	out := filepath.Join(t.TempDir(), "out")
	s := &BackSource{HTTP: srv.Client(), URL: srv.URL + "/ignores", Headers: map[string]string{"Range": "bytes=20-29"}}
	if _, err := s.DownloadFile(context.Background(), out, "", nil); err == nil {
		t.Error("file mode took the whole file for a range")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed range download left a file at the output path")
	}
}
