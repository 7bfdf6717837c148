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

// An output name may use all of NAME_MAX: the temp files written beside
// it (".<name>.backsource-*", ".<name>.dfget-*") must still be creatable.
func TestLongOutputNameTempFiles(t *testing.T) {
	const data = "0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f", time.Time{}, strings.NewReader(data))
	}))
	defer srv.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, strings.Repeat("n", 250))
	s := &BackSource{HTTP: srv.Client(), URL: srv.URL + "/f"}
	if _, err := s.DownloadFile(context.Background(), out, "", nil); err != nil {
		t.Fatalf("back-source to a 250-byte name: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != data {
		t.Fatalf("output is %q", b)
	}
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Publish(src, out); err != nil {
		t.Fatalf("publish to a 250-byte name: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "new" {
		t.Fatalf("published output is %q", b)
	}
}
