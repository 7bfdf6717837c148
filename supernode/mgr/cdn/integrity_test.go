package cdn

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// rawOrigin answers every request by writing raw bytes on the hijacked
// connection and closing it (with a reset when reset is set), so the
// response can be cut where a well-behaved server never would.
func rawOrigin(t *testing.T, raw []byte, reset bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			// The source pattern's probe: a well-formed answer.
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", 6_000_000))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write([]byte{0})
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		writeRaw(conn, rw, raw, reset)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeRaw(conn net.Conn, rw *bufio.ReadWriter, raw []byte, reset bool) {
	_, _ = rw.Write(raw)
	_ = rw.Flush()
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// cutResponses are origin answers that end before the whole body was sent
// (a 6,000,000-byte file): each must fail the CDN task.
func cutResponses() map[string]struct {
	raw   []byte
	reset bool
} {
	body := bytes.Repeat([]byte("0123456789"), 600_000)
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	one := []byte(fmt.Sprintf("%s%x\r\n%s\r\n", chunked, len(body), body))
	return map[string]struct {
		raw   []byte
		reset bool
	}{
		// One whole chunk, then close without the terminating 0 chunk.
		"chunked cut at a chunk boundary": {raw: one},
		"chunked cut inside a chunk":      {raw: one[:len(one)-1000]},
		"chunked cut inside a chunk size": {raw: append(append([]byte(nil), one...), []byte("1")...)},
		"short Content-Length": {raw: append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 6000000\r\nConnection: close\r\n\r\n"),
			body[:5_000_000]...)},
		"connection reset": {raw: append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 6000000\r\nConnection: close\r\n\r\n"),
			body[:5_000_000]...), reset: true},
	}
}

// Every cut-off body fails the task: the result, the .meta (never finished
// and successful) and the piece server (nothing served) all say so.
func TestCutSourceBodyFailsTheTask(t *testing.T) {
	for name, c := range cutResponses() {
		t.Run(name, func(t *testing.T) {
			srv := rawOrigin(t, c.raw, c.reset)
			p := NewMockProgress(gomock.NewController(t))
			m, st := newManager(t, p, 0)
			p.EXPECT().ResetCDN("cut")
			p.EXPECT().SetCDNPiece("cut", 0).MaxTimes(1) // the complete first piece may be offered
			p.EXPECT().FinishCDN("cut", 0, false)
			_, res := start(t, m, Source{TaskID: "cut", RawURL: srv.URL + "/f", TaskURL: srv.URL + "/f"})
			if res.OK || !IsSourceError(res.Err) {
				t.Fatalf("cut body: %+v", res)
			}
			t.Logf("error: %v", res.Err)
			meta, err := st.ReadMeta("cut")
			if err != nil || meta.Finish || meta.Success {
				t.Fatalf("meta after a cut body: %+v %v", meta, err)
			}
			if _, state := m.Servable("cut", 0, 10); state != ServeNotFound {
				t.Fatalf("cut file servable: %d", state)
			}
		})
	}
}

// The source pattern: pieces are offered only with their digest, which is
// the "md5:len" of the plain range a client receives, and the result
// carries the whole-file md5; nothing is written to the cache.
func TestSourcePatternDigests(t *testing.T) {
	data := make([]byte, 2*piece.DefaultSize+1234)
	for i := range data {
		data[i] = byte(i * 13)
	}
	o := newOriginT(t, data)
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	p.EXPECT().ResetCDN("s1")
	p.EXPECT().SetCDNPiece("s1", gomock.Any()).Times(3).Do(func(id string, num int) {
		if m.PieceMd5(id, num) == "" {
			t.Errorf("piece %d offered before its digest", num)
		}
	})
	p.EXPECT().FinishCDN("s1", 3, true)
	done := make(chan Result, 1)
	started, err := m.StartSource(Source{TaskID: "s1", RawURL: o.URL + "/f", Md5: strings.ToUpper(md5hex(data))},
		func(r Result) { done <- r })
	if err != nil || started.HTTPFileLength != int64(len(data)) || started.PieceSize != piece.DefaultSize {
		t.Fatalf("start: %+v %v", started, err)
	}
	var res Result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("source digests did not finish")
	}
	if !res.OK || res.RealMd5 != md5hex(data) || res.PieceTotal != 3 || res.FileLength != int64(len(data)) {
		t.Fatalf("result %+v", res)
	}
	ps := int(piece.DefaultSize)
	for i := range 3 {
		want := piece.Md5Value(data[i*ps : min((i+1)*ps, len(data))])
		if got := m.PieceMd5("s1", i); got != want {
			t.Fatalf("piece %d digest %q, want %q", i, got, want)
		}
		b3 := digest.Sum(digest.BLAKE3, data[i*ps:min((i+1)*ps, len(data))])
		if got := m.PieceDigest("s1", i); got != b3 {
			t.Fatalf("piece %d blake3 %v, want %v", i, got, b3)
		}
	}
	if _, err := st.ReadMeta("s1"); err == nil {
		t.Fatal("source pattern wrote a meta")
	}
	if _, state := m.Servable("s1", 0, 10); state != ServeNotFound {
		t.Fatalf("source pattern task servable: %d", state)
	}
}

// A source that breaks during the digest read fails the source-pattern
// task: no piece past the break is ever offered.
func TestSourcePatternCutBodyFails(t *testing.T) {
	c := cutResponses()["chunked cut inside a chunk"]
	srv := rawOrigin(t, c.raw, false)
	p := NewMockProgress(gomock.NewController(t))
	m, _ := newManager(t, p, 0)
	p.EXPECT().ResetCDN("s2")
	p.EXPECT().SetCDNPiece("s2", 0).MaxTimes(1)
	p.EXPECT().FinishCDN("s2", 0, false)
	done := make(chan Result, 1)
	if _, err := m.StartSource(Source{TaskID: "s2", RawURL: srv.URL + "/f"}, func(r Result) { done <- r }); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.OK || !IsSourceError(res.Err) {
			t.Fatalf("cut source: %+v", res)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("source digests did not finish")
	}
	if m.PieceMd5("s2", 1) != "" {
		t.Fatal("piece past the cut has a digest")
	}
}

// An upper-case md5 is the same digest: the CDN succeeds with it, and the
// complete cache written under the lower-case one is reused.
func TestUpperCaseMd5(t *testing.T) {
	data := bytes.Repeat([]byte("abc"), 1000)
	o := newOriginT(t, data)
	p := NewMockProgress(gomock.NewController(t))
	m, _ := newManager(t, p, 0)
	expectRun(p, "u1", 1)
	_, res := start(t, m, Source{TaskID: "u1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Md5: md5hex(data)})
	if !res.OK {
		t.Fatalf("lower-case md5: %+v", res)
	}
	expectRun(p, "u1", 1)
	st, res := start(t, m, Source{TaskID: "u1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Md5: strings.ToUpper(md5hex(data))})
	if !res.OK || !st.CacheHit {
		t.Fatalf("upper-case md5: %+v %+v", st, res)
	}
	expectRun(p, "u2", 1)
	_, res = start(t, m, Source{TaskID: "u2", RawURL: o.URL + "/f", TaskURL: o.URL + "/f", Md5: strings.ToUpper(md5hex(data))})
	if !res.OK {
		t.Fatalf("upper-case md5, fresh fetch: %+v", res)
	}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}
