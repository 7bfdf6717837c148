package synth

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func readAll(t *testing.T, name string, size int64) []byte {
	t.Helper()
	c, err := New(name, size)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeterministicAndDistinct(t *testing.T) {
	a := readAll(t, "a", 300_001)
	if int64(len(a)) != 300_001 {
		t.Fatalf("len %d", len(a))
	}
	if !bytes.Equal(a, readAll(t, "a", 300_001)) {
		t.Fatal("same name and size gave different content")
	}
	if bytes.Equal(a[:1000], readAll(t, "b", 300_001)[:1000]) {
		t.Fatal("different names gave the same content")
	}
	// Blocks must differ from each other, so misplaced pieces are caught.
	if bytes.Equal(a[:blockSize], a[blockSize:2*blockSize]) {
		t.Fatal("content is periodic")
	}
}

func TestReadAtMatchesSequential(t *testing.T) {
	const size = 3*blockSize + 13
	all := readAll(t, "x", size)
	c, _ := New("x", size)
	for _, tc := range []struct{ off, n int64 }{
		{0, 1}, {3, 5}, {7, 9}, {blockSize - 3, 10}, {blockSize*2 + 1, blockSize + 7}, {size - 5, 5},
	} {
		p := make([]byte, tc.n)
		n, err := c.ReadAt(p, tc.off)
		if err != nil || int64(n) != tc.n {
			t.Fatalf("ReadAt(%d,%d) = %d, %v", tc.off, tc.n, n, err)
		}
		if !bytes.Equal(p, all[tc.off:tc.off+tc.n]) {
			t.Fatalf("ReadAt(%d,%d) differs from the sequential read", tc.off, tc.n)
		}
	}
	p := make([]byte, 10)
	if n, err := c.ReadAt(p, size-4); n != 4 || err != io.EOF {
		t.Fatalf("short ReadAt at the end = %d, %v; want 4, EOF", n, err)
	}
	if _, err := c.ReadAt(p, size); err != io.EOF {
		t.Fatalf("ReadAt past end: %v", err)
	}
	if _, err := New("x", -1); err == nil {
		t.Fatal("negative size accepted")
	}
}

func TestVerify(t *testing.T) {
	const size = 2<<20 + 77
	good := readAll(t, "v", size)
	if err := Verify(bytes.NewReader(good), "v", size); err != nil {
		t.Fatalf("good content: %v", err)
	}
	bad := bytes.Clone(good)
	bad[1<<20+5] ^= 1
	err := Verify(bytes.NewReader(bad), "v", size)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(1<<20+5)) {
		t.Fatalf("flipped byte: %v", err)
	}
	if err := Verify(bytes.NewReader(good[:size-1]), "v", size); err == nil {
		t.Fatal("short content accepted")
	}
	if err := Verify(bytes.NewReader(append(good, 0)), "v", size); err == nil {
		t.Fatal("long content accepted")
	}
	if err := Verify(bytes.NewReader(good), "w", size); err == nil {
		t.Fatal("content of another name accepted")
	}
}

func TestServer(t *testing.T) {
	s := NewServer()
	ts := httptest.NewServer(s)
	defer ts.Close()
	const size = 100_000
	want := readAll(t, "f.bin", size)
	url := ts.URL + FilePath("f.bin", size)

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.ContentLength != size {
		t.Fatalf("full GET: status %d len %d", resp.StatusCode, len(body))
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("missing validators: %v", resp.Header)
	}

	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[1000:2000]) {
		t.Fatalf("range GET: status %d len %d", resp.StatusCode, len(body))
	}

	req.Header.Set("Range", "bytes=200000-")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("unsatisfiable range: status %d", resp.StatusCode)
	}

	req, _ = http.NewRequest("GET", url, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: status %d", resp.StatusCode)
	}

	for _, p := range []string{"/files/abc/x", "/files/10/", "/nope"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: status %d", p, resp.StatusCode)
		}
	}

	st := s.Stats()
	if st.BytesServed != size+1000 || st.ByPath[FilePath("f.bin", size)] != size+1000 {
		t.Fatalf("stats %+v, want %d bytes", st, size+1000)
	}
}

func BenchmarkRead(b *testing.B) {
	c, _ := New("bench", 1<<40)
	p := make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	for i := 0; b.Loop(); i++ {
		_, _ = c.ReadAt(p, int64(i)<<20)
	}
}
