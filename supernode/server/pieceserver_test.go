package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

func TestPieceServer(t *testing.T) {
	repo := t.TempDir()
	id := "abcdef0123"
	dir := filepath.Join(repo, "download", "abc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "abclink")); err != nil {
		t.Fatal(err)
	}
	ctrl := gomock.NewController(t)
	s := NewMockServable(ctrl)
	srv := httptest.NewServer(NewPieceServer(repo, s, nil))
	defer srv.Close()
	get := func(path, rng string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Being written: only pieces the CDN reports complete, clipped to them.
	s.EXPECT().Servable(id, int64(0), int64(3)).Return(int64(4), cdn.ServeOK)
	if st, b := get("/download/abc/"+id, "bytes=0-3"); st != 206 || b != "0123" {
		t.Fatalf("written range: %d %q", st, b)
	}
	s.EXPECT().Servable(id, int64(4), int64(9)).Return(int64(0), cdn.ServeNotReady)
	if st, _ := get("/download/abc/"+id, "bytes=4-9"); st != 503 {
		t.Fatalf("unwritten range: %d", st)
	}
	s.EXPECT().Servable(id, int64(0), int64(-1)).Return(int64(10), cdn.ServeOK)
	if st, b := get("/download/abc/"+id, ""); st != 200 || b != "0123456789" {
		t.Fatalf("whole complete file: %d %q", st, b)
	}
	s.EXPECT().Servable(id, int64(20), int64(30)).Return(int64(10), cdn.ServeOK)
	if st, _ := get("/download/abc/"+id, "bytes=20-30"); st != 416 {
		t.Fatalf("range past the end: %d", st)
	}
	s.EXPECT().Servable("abclink", gomock.Any(), gomock.Any()).Return(int64(6), cdn.ServeOK)
	if st, b := get("/download/abc/abclink", ""); st != 404 {
		t.Fatalf("symlink followed: %d %q", st, b)
	}
	s.EXPECT().Servable("abcmissing", gomock.Any(), gomock.Any()).Return(int64(0), cdn.ServeNotFound)
	if st, _ := get("/download/abc/abcmissing", ""); st != 404 {
		t.Fatalf("unknown: %d", st)
	}
	for _, p := range []string{"/download/", "/download/abc/", "/download/abc/" + id + ".meta", "/download/abd/" + id,
		"/download/abc/../abc/" + id, "/etc/passwd", "/download/abc/%2e%2e%2fx"} {
		if st, _ := get(p, ""); st != 404 {
			t.Errorf("%s: %d, want 404", p, st)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/download/abc/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

// Only a range naming both bounds is a piece; the unit is case-insensitive
// (RFC 9110 14.1) and the bounds are plain digits, as the supernode's other
// Range parsers read them.
func TestSingleRange(t *testing.T) {
	type want struct {
		s, e int64
		ok   bool
	}
	for h, w := range map[string]want{
		"bytes=0-4194303": {0, 4194303, true},
		"bytes=5-5":       {5, 5, true},
		"bytes= 5-9":      {5, 9, true},
		"Bytes=5-9":       {5, 9, true},
		"bytes=9223372036854775807-9223372036854775807": {1<<63 - 1, 1<<63 - 1, true},
		"":                            {},
		"bytes=5-":                    {},
		"bytes=-5":                    {},
		"bytes=-0":                    {},
		"bytes=5-4":                   {},
		"bytes=0-1,4-5":               {},
		"bytes=+5-9":                  {},
		"bytes=5-+9":                  {},
		"bytes=0--0":                  {},
		"bytes=5 - 9":                 {},
		"bytes=0-9223372036854775808": {},
		"items=0-1":                   {},
	} {
		if s, e, ok := singleRange(h); (want{s, e, ok}) != w {
			t.Errorf("singleRange(%q) = %d, %d, %v; want %+v", h, s, e, ok, w)
		}
	}
	if n := testing.AllocsPerRun(100, func() { singleRange("bytes=4194304-8388607") }); n != 0 {
		t.Errorf("singleRange allocates %v times per piece request", n)
	}
}
