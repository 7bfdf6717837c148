package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// cutOrigin serves data correctly, except that its first `bad` full GETs
// get a response cut as mode says: "chunk-boundary" (one chunk of the
// first cutAt bytes, then close without the terminating zero-length
// chunk), "chunk-mid" (close inside that chunk), "short" (a Content-Length
// of the whole file, then close after cutAt bytes) or "reset" (the same,
// ended by a TCP reset).
type cutOrigin struct {
	*httptest.Server
	data []byte
	mode string
	bad  atomic.Int32
}

const cutAt = 6_000_000

func newCutOrigin(t *testing.T, data []byte, mode string, bad int) *cutOrigin {
	o := &cutOrigin{data: data, mode: mode}
	o.bad.Store(int32(bad))
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *cutOrigin) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Range") != "" || o.bad.Add(-1) < 0 {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(o.data))
		return
	}
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	body := o.data[:cutAt]
	switch o.mode {
	case "chunk-boundary", "chunk-mid":
		fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n", len(body))
		if o.mode == "chunk-mid" {
			body = body[:len(body)/2]
		}
		_, _ = rw.Write(body)
		if o.mode == "chunk-boundary" {
			_, _ = rw.WriteString("\r\n")
		}
	default:
		fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(o.data))
		_, _ = rw.Write(body)
	}
	_ = rw.Flush()
	if tc, ok := conn.(*net.TCPConn); ok && o.mode == "reset" {
		_ = tc.SetLinger(0)
	}
}

var cutModes = []string{"chunk-boundary", "chunk-mid", "short", "reset"}

// A source body cut off in any way fails the CDN: dfget --notbs exits
// non-zero and leaves no file, no .meta says finished and successful, and
// the next dfget gets the whole, right file once the origin behaves. A
// dfget without --notbs falls back to the source and is right too.
func TestIntegrityCutSourceBody(t *testing.T) {
	data := randomData(9_000_000, 111)
	for _, mode := range cutModes {
		t.Run(mode, func(t *testing.T) {
			sn := startSupernode(t, t.TempDir())
			out := t.TempDir()
			o := newCutOrigin(t, data, mode, 1)
			p := newDfgetPeer(t, "127.0.0.2")
			r := p.run(sn, "-u", o.URL+"/f.bin", "-o", filepath.Join(out, "first"), "--notbs", "--timeout", "60s")
			t.Logf("cut body, --notbs: exit %d: %s", r.code, lastLine(r.stdout))
			if r.code == 0 {
				t.Fatalf("a cut source body was a success:\n%s", r.stdout)
			}
			noFile(t, filepath.Join(out, "first"))
			noSuccessfulMeta(t, sn)

			r = p.run(sn, "-u", o.URL+"/f.bin", "-o", filepath.Join(out, "second"), "--notbs", "--timeout", "60s")
			if r.code != 0 {
				t.Fatalf("later dfget: exit %d\n%s", r.code, r.stdout)
			}
			fileEquals(t, filepath.Join(out, "second"), data)

			o2 := newCutOrigin(t, data, mode, 1)
			r = newDfgetPeer(t, "127.0.0.3").run(sn, "-u", o2.URL+"/g.bin", "-o", filepath.Join(out, "third"), "--timeout", "60s")
			t.Logf("cut body, back-source allowed: exit %d: %s", r.code, lastLine(r.stdout))
			if r.code != 0 {
				t.Fatalf("dfget with back-source: exit %d\n%s", r.code, r.stdout)
			}
			fileEquals(t, filepath.Join(out, "third"), data)
		})
	}
}

// A file preheat of a URL whose body is cut off never ends SUCCESS.
func TestIntegrityCutSourcePreheat(t *testing.T) {
	data := randomData(9_000_000, 112)
	sn := startSupernode(t, t.TempDir())
	for _, mode := range cutModes {
		t.Run(mode, func(t *testing.T) {
			o := newCutOrigin(t, data, mode, 1000)
			info := preheat(t, sn, o.URL+"/pre.bin")
			t.Logf("preheat: %s %s", info.Status, info.ErrorMsg)
			if info.Status != types.PreheatFailed {
				t.Fatalf("preheat of a cut body ended %s", info.Status)
			}
		})
	}
	noSuccessfulMeta(t, sn)
}

// preheat creates a file preheat and waits until it ends.
func preheat(t *testing.T, sn *supernode, u string) types.PreheatInfo {
	t.Helper()
	resp, err := httpc.Post(sn.apiURL+"/preheats", "application/json", strings.NewReader(`{"type":"file","url":"`+u+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created types.PreheatCreateResponse
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || created.ID == "" {
		t.Fatalf("create preheat: HTTP %d %+v", resp.StatusCode, created)
	}
	var info types.PreheatInfo
	Eventually(t, 30*time.Second, "preheat end", func() bool {
		resp, err := httpc.Get(sn.apiURL + "/preheats/" + created.ID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		info = types.PreheatInfo{}
		_ = json.NewDecoder(resp.Body).Decode(&info)
		return info.Status == types.PreheatSuccess || info.Status == types.PreheatFailed
	})
	return info
}

// noSuccessfulMeta fails if any cache .meta of the supernode says finished
// and successful.
func noSuccessfulMeta(t *testing.T, sn *supernode) {
	t.Helper()
	_ = filepath.WalkDir(filepath.Join(sn.home, "repo"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".meta") {
			return nil
		}
		b, _ := os.ReadFile(path)
		var m struct{ Finish, Success bool }
		if json.Unmarshal(b, &m) == nil && m.Finish && m.Success {
			t.Errorf("%s says finished and successful: %s", path, b)
		}
		return nil
	})
}
