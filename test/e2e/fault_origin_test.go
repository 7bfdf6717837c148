package e2e

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dyingOrigin serves one file with ETag and Last-Modified; the first dies
// full GETs send the headers and cut bytes of the body, then drop the
// connection (the origin process "dies" mid-transfer). It records every
// Range header.
type dyingOrigin struct {
	*httptest.Server
	data    []byte
	cut     int
	stall   bool // stop writing and hold the connection instead of dropping it
	dies    atomic.Int32
	mu      sync.Mutex
	ranges  []string
	full    int
	modTime time.Time
}

func newDyingOrigin(t *testing.T, data []byte, cut, dies int) *dyingOrigin {
	o := &dyingOrigin{data: data, cut: cut, modTime: time.Now().Add(-time.Hour).Truncate(time.Second)}
	o.dies.Store(int32(dies))
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *dyingOrigin) serve(w http.ResponseWriter, r *http.Request) {
	rng := r.Header.Get("Range")
	o.mu.Lock()
	if rng != "" {
		o.ranges = append(o.ranges, rng)
	} else {
		o.full++
	}
	o.mu.Unlock()
	w.Header().Set("ETag", `"dying-1"`)
	if rng == "" && o.dies.Add(-1) >= 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(o.data)))
		w.Header().Set("Last-Modified", o.modTime.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(o.data[:o.cut])
		w.(http.Flusher).Flush()
		if o.stall {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Minute):
			}
		}
		time.Sleep(100 * time.Millisecond)
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}
	http.ServeContent(w, r, "", o.modTime, bytes.NewReader(o.data))
}

func (o *dyingOrigin) seen() (full int, ranges []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.full, append([]string(nil), o.ranges...)
}

// The origin drops the connection mid-CDN ("drop"), or stops sending and
// holds it ("stall", sourceTimeout 1 s): dfget fails cleanly within its
// timeout (--notbs: exit 80, no output; it does not hang), and the next
// attempt makes the supernode resume with a Range from the last whole
// piece received (never from 0) and the file is correct.
func TestFaultOriginDiesMidCDN(t *testing.T) {
	for _, stall := range []bool{false, true} {
		t.Run(map[bool]string{false: "drop", true: "stall"}[stall], func(t *testing.T) { originDies(t, stall) })
	}
}

func originDies(t *testing.T, stall bool) {
	data := randomData(20<<20+333, 101)
	cut := 9<<20 + 12345
	o := newDyingOrigin(t, data, cut, 1)
	o.stall = stall
	url := o.URL + "/dying.bin"
	// A stalled body fails the CDN after 3 x sourceTimeout: 3 s here.
	cfg := filepath.Join(t.TempDir(), "sn.yml")
	if err := os.WriteFile(cfg, []byte("base:\n  sourceTimeout: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sn := startSupernode(t, t.TempDir(), "--config", cfg)
	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()

	r := p.run(sn, "-u", url, "-o", filepath.Join(out, "first"), "--notbs", "--timeout", "60s")
	t.Logf("first attempt: exit %d in %v: %s", r.code, r.duration.Round(time.Millisecond), lastLine(r.stdout))
	if r.code != 80 || !strings.Contains(r.stdout, "download FAIL") {
		t.Fatalf("first attempt: exit %d, want 80\n%s", r.code, r.stdout)
	}
	if r.duration > 30*time.Second {
		t.Errorf("the failure took %v; a dead origin must not hold the client to its timeout", r.duration)
	}
	noFile(t, filepath.Join(out, "first"))

	r = p.run(sn, "-u", url, "-o", filepath.Join(out, "second"), "--notbs", "--timeout", "60s")
	if r.code != 0 {
		t.Fatalf("second attempt: exit %d\n%s", r.code, r.stdout)
	}
	fileEquals(t, filepath.Join(out, "second"), data)
	full, ranges := o.seen()
	t.Logf("origin saw %d full GETs and ranges %v", full, ranges)
	if full != 1 || len(ranges) != 1 {
		t.Fatalf("origin saw %d full GETs and ranges %v; want 1 and one resume", full, ranges)
	}
	spec, ok := strings.CutPrefix(ranges[0], "bytes=")
	from, to, _ := strings.Cut(spec, "-")
	n, err := strconv.Atoi(from)
	if !ok || err != nil || n <= 0 || n > cut || (to != "" && to != strconv.Itoa(len(data)-1)) {
		t.Fatalf("resume range %q: want bytes=N- or bytes=N-%d with 0 < N <= %d", ranges[0], len(data)-1, cut)
	}
	t.Logf("resumed at byte %d of %d (%d received before the cut)", n, len(data), cut)
}

// The origin dies mid-CDN while a dfget without --notbs downloads: it
// falls back to the source (which answers again) and the file is correct.
func TestFaultOriginDiesFallback(t *testing.T) {
	data := randomData(12<<20, 102)
	o := newDyingOrigin(t, data, 5<<20, 1)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	dst := filepath.Join(t.TempDir(), "out")
	r := p.run(sn, "-u", o.URL+"/dying.bin", "-o", dst, "--timeout", "60s")
	if r.code != 0 || strings.Contains(r.stdout, "reason:0") {
		t.Fatalf("exit %d, want a fallback success\n%s", r.code, r.stdout)
	}
	fileEquals(t, dst, data)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
