package cdn

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A ranged 206 without Content-Length is as long as its Content-Range
// says: the task's length is known, and a body short of it fails the fill
// instead of being stored as the range.
func TestRanged206WithoutContentLength(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefgh"), 100)
	for _, tc := range []struct {
		name string
		send int // bytes of the range sent
		ok   bool
	}{{"whole range", 100, true}, {"short body", 50, false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", "bytes 100-199/800")
				w.WriteHeader(http.StatusPartialContent)
				w.(http.Flusher).Flush() // chunked: no Content-Length
				_, _ = w.Write(data[100 : 100+tc.send])
			}))
			t.Cleanup(o.Close)
			m, st := newManager(t, anyProgress(t), 0)
			src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Headers: map[string]string{"Range": "bytes=100-199"}}
			started, res := start(t, m, src)
			if started.HTTPFileLength != 100 {
				t.Errorf("started with length %d, want the Content-Range's 100", started.HTTPFileLength)
			}
			if res.OK != tc.ok {
				t.Fatalf("fill of %d of the range's 100 bytes: %+v, want OK %v", tc.send, res, tc.ok)
			}
			if tc.ok && !bytes.Equal(cachedContent(t, st, "t1"), data[100:200]) {
				t.Fatal("cache is not the range")
			}
		})
	}
}
