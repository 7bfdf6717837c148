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
