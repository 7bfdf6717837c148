package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// Three peers with their own IPs and peer servers fetch one 96 MiB file at
// once through a real supernode; each gets the exact bytes and the
// supernode has scheduled pieces from peers, not only from its CDN.
func TestDfgetSwarm(t *testing.T) {
	o := newOrigin(t)
	data := randomData(96<<20, 1)
	url := o.add("/swarm.bin", data)
	sn := startSupernode(t, t.TempDir())
	// Warm the CDN first: on a cold task the CDN fill is the frontier and
	// every new piece is fresh from the supernode; on a warm one the three
	// peers race over all pieces and must share.
	warm := newClient(t, sn, "127.0.0.9-warm")
	waitCDN(t, sn, warm.register(warm.registerReq(url)).TaskID, time.Minute)
	out := t.TempDir()
	var wg sync.WaitGroup
	runs := make([]dfgetRun, 3)
	for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		p := newDfgetPeer(t, ip)
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = p.run(sn, "-u", url, "-o", filepath.Join(out, ip), "--notbs")
		}()
	}
	wg.Wait()
	for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		if runs[i].code != 0 || !strings.Contains(runs[i].stdout, "download SUCCESS") {
			t.Fatalf("%s: exit %d\n%s%s", ip, runs[i].code, runs[i].stdout, runs[i].stderr)
		}
		fileEquals(t, filepath.Join(out, ip), data)
	}
	fromPeers := metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="peer"}`)
	fromCDN := metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="supernode"}`)
	t.Logf("pieces scheduled from peers %v, from the supernode %v", fromPeers, fromCDN)
	if fromPeers == 0 {
		t.Fatal("no piece was scheduled from a peer")
	}
	if n := metricValue(t, sn, "dragonfly_dfget_download_total"); n != 3 {
		t.Errorf("dfget_download_total = %v, want 3 (one metrics report per download)", n)
	}
	if n := o.count("/swarm.bin", http.StatusOK); n > 2 {
		t.Errorf("origin served the whole file %d times", n)
	}
}

// The peer server is spawned once per home and reused; it refuses paths
// that are not registered task files.
func TestDfgetPeerServerReuseAndRefusal(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5<<20, 2)
	url := o.add("/reuse.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()
	for i := 0; i < 2; i++ {
		r := p.run(sn, "-u", url, "-o", filepath.Join(out, strconv.Itoa(i)))
		if r.code != 0 {
			t.Fatalf("run %d: exit %d %s", i, r.code, r.stdout)
		}
		fileEquals(t, filepath.Join(out, strconv.Itoa(i)), data)
	}
	pid := p.serverPid()
	if pid == 0 {
		t.Fatal("no peer server pid recorded")
	}
	var meta types.HostMeta
	b, _ := os.ReadFile(filepath.Join(p.home, "meta", "host.meta"))
	if err := json.Unmarshal(b, &meta); err != nil || meta.ServicePort == 0 {
		t.Fatalf("host.meta = %q (%v)", b, err)
	}
	log, _ := os.ReadFile(filepath.Join(p.home, "logs", "dfserver.log"))
	if n := strings.Count(string(log), "dfget uploader server port is"); n != 1 {
		t.Errorf("peer server started %d times, want once", n)
	}
	base := fmt.Sprintf("http://127.0.0.2:%d", meta.ServicePort)
	secret := filepath.Join(p.home, "data", "secret.service")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(p.home, "data", "link.service")); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/peer/file/secret", "/peer/file/link", "/peer/file/..%2F..%2Fetc%2Fpasswd",
		"/peer/file/%2Fetc%2Fpasswd", "/peer/file/../../etc/passwd"} {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Range", "bytes=0-100")
		req.Header.Set("pieceNum", "0")
		req.Header.Set("pieceSize", "4194304")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Errorf("%s: HTTP %d, want a refusal", path, resp.StatusCode)
		}
	}
}

// Failures: a source 404, a supernode that is down (with and without
// --notbs), bad flags. Each ends with one clear line, the documented exit
// status, and no output file.
func TestDfgetFailures(t *testing.T) {
	o := newOrigin(t)
	data := randomData(3<<20, 3)
	url := o.add("/ok.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()
	down := &supernode{api: FreePort(t)}

	t.Run("source 404", func(t *testing.T) {
		dst := filepath.Join(out, "404")
		r := p.run(sn, "-u", o.URL+"/missing", "-o", dst)
		if r.code != 80 || !strings.Contains(r.stdout, "404") {
			t.Fatalf("exit %d: %s", r.code, r.stdout)
		}
		noFile(t, dst)
	})
	t.Run("supernode down notbs", func(t *testing.T) {
		dst := filepath.Join(out, "notbs")
		r := p.run(down, "-u", url, "-o", dst, "--notbs")
		if r.code != 80 || !strings.Contains(r.stdout, "download FAIL") {
			t.Fatalf("exit %d: %s", r.code, r.stdout)
		}
		noFile(t, dst)
	})
	t.Run("supernode down falls back", func(t *testing.T) {
		dst := filepath.Join(out, "bs")
		r := p.run(down, "-u", url, "-o", dst)
		if r.code != 0 || !strings.Contains(r.stdout, "reason:1") {
			t.Fatalf("exit %d: %s", r.code, r.stdout)
		}
		fileEquals(t, dst, data)
	})
	t.Run("failover to the next node", func(t *testing.T) {
		dst := filepath.Join(out, "failover")
		r := p.run(nil, "-u", url, "-o", dst, "--notbs", "--node", Addr(down.api)+"=5,"+Addr(sn.api))
		if r.code != 0 || !strings.Contains(r.stdout, "connected to node:"+Addr(sn.api)) {
			t.Fatalf("exit %d: %s", r.code, r.stdout)
		}
		fileEquals(t, dst, data)
	})
	for name, args := range map[string][]string{
		"output is a directory": {"-u", url, "-o", out},
		"bad node":              {"-u", url, "-o", filepath.Join(out, "x"), "--node", "host:99999"},
		"bad rate":              {"-u", url, "-o", filepath.Join(out, "x"), "--locallimit", "fast"},
		"bad url":               {"-u", "ftp://example.com/x", "-o", filepath.Join(out, "x")},
		"output under a file":   {"-u", url, "-o", filepath.Join(out, "bs", "x")},
	} {
		t.Run(name, func(t *testing.T) {
			r := p.run(sn, args...)
			if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stderr == "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			noFile(t, filepath.Join(out, "x"))
		})
	}
}

// A holder that serves garbage: the test registers a fake peer with the
// supernode, claims every piece with /peer/piece/suc, and serves corrupt
// bytes. dfget detects each bad piece, reports it and fetches it elsewhere.
func TestDfgetCorruptPeer(t *testing.T) {
	o := newOrigin(t)
	data := randomData(24<<20, 4)
	url := o.add("/corrupt.bin", data)
	sn := startSupernode(t, t.TempDir())
	warmUp(t, sn, url) // only the CDN and the liar hold pieces now

	var hits atomic.Int64
	fakeHolder(t, sn, url, "127.0.0.5", int64(len(data)), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		s, e, err := piece.ParseRange(strings.TrimPrefix(r.Header.Get("Range"), "bytes="))
		if err != nil {
			w.WriteHeader(400)
			return
		}
		b := make([]byte, e-s+1)
		for i := range b {
			b[i] = 0x7F
		}
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(b)
	}))
	reported := 0
	for i, ip := range []string{"127.0.0.3", "127.0.0.4"} {
		p := newDfgetPeer(t, ip)
		dst := filepath.Join(t.TempDir(), "out")
		r := p.run(sn, "-u", url, "-o", dst, "--notbs")
		if r.code != 0 {
			t.Fatalf("download %d: exit %d %s", i, r.code, r.stdout)
		}
		fileEquals(t, dst, data)
		log, _ := os.ReadFile(filepath.Join(p.home, "logs", "dfclient.log"))
		reported += strings.Count(string(log), "reported FILE_MD5_NOT_MATCH")
	}
	if hits.Load() == 0 {
		t.Fatal("the supernode never scheduled a piece from the fake peer; nothing was tested")
	}
	if reported == 0 {
		t.Error("corrupt pieces were not reported to the supernode")
	}
	t.Logf("fake peer served %d corrupt pieces, %d reported; files are intact", hits.Load(), reported)
}

// A peer server killed while others download from it: they still finish.
func TestDfgetPeerKilledMidDownload(t *testing.T) {
	o := newOrigin(t)
	data := randomData(64<<20, 5)
	url := o.add("/kill.bin", data)
	sn := startSupernode(t, t.TempDir())
	seed := newDfgetPeer(t, "127.0.0.2")
	if r := seed.run(sn, "-u", url, "-o", filepath.Join(t.TempDir(), "seed"), "--notbs"); r.code != 0 {
		t.Fatalf("seed: exit %d %s", r.code, r.stdout)
	}
	pid := seed.serverPid()
	before := bytesWritten(t, pid)
	var wg sync.WaitGroup
	out := t.TempDir()
	runs := make([]dfgetRun, 2)
	var done [2]atomic.Bool
	for i, ip := range []string{"127.0.0.3", "127.0.0.4"} {
		p := newDfgetPeer(t, ip)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 16 MB/s: 4 s for the file, time enough to kill the seed
			// while both are fetching.
			runs[i] = p.run(sn, "-u", url, "-o", filepath.Join(out, ip), "--notbs", "--locallimit", "16MB")
			done[i].Store(true)
		}()
	}
	// The seed's server has sent a whole piece: the downloads really fetch
	// from it (being scheduled to it is not enough, a dead seed is too).
	Eventually(t, 10*time.Second, "the seed serving a piece", func() bool {
		return bytesWritten(t, pid)-before >= 4<<20 || done[0].Load() || done[1].Load()
	})
	running := !done[0].Load() && !done[1].Load()
	sent := bytesWritten(t, pid) - before
	seed.killServer()
	wg.Wait()
	if !running {
		t.Fatalf("a download finished before the seed was killed (the seed had sent %d bytes): the kill tested nothing", sent)
	}
	t.Logf("the seed had sent %d bytes when it was killed", sent)
	for i, ip := range []string{"127.0.0.3", "127.0.0.4"} {
		if runs[i].code != 0 {
			t.Fatalf("%s: exit %d %s", ip, runs[i].code, runs[i].stdout)
		}
		fileEquals(t, filepath.Join(out, ip), data)
	}
}

// bytesWritten is what process pid wrote, sockets and sendfile included
// (wchar of /proc/<pid>/io).
func bytesWritten(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatalf("io of pid %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("io of pid %d: %q", pid, l)
			}
			return n
		}
	}
	t.Fatalf("io of pid %d: no wchar", pid)
	return 0
}

// --locallimit slows one download; --totallimit is shared by the
// downloads of a host through its peer server's /rate/ fair share.
func TestDfgetRateLimits(t *testing.T) {
	o := newOrigin(t)
	data := randomData(12<<20, 6)
	url := o.add("/rate.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()
	r := p.run(sn, "-u", url, "-o", filepath.Join(out, "local"), "--notbs", "--locallimit", "4MB")
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, filepath.Join(out, "local"), data)
	if r.duration < 2*time.Second {
		t.Errorf("12 MiB at 4 MB/s took %v", r.duration)
	}
	var wg sync.WaitGroup
	durs := make([]time.Duration, 2)
	for i := range durs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := p.run(sn, "-u", url, "-o", filepath.Join(out, "total"+strconv.Itoa(i)), "--notbs", "--totallimit", "8MB")
			if r.code != 0 {
				t.Errorf("total %d: exit %d %s", i, r.code, r.stdout)
			}
			durs[i] = r.duration
		}()
	}
	wg.Wait()
	if max(durs[0], durs[1]) < 2*time.Second {
		t.Errorf("two 12 MiB downloads under an 8 MB/s host limit took %v", durs)
	}
}

// File mode at the piece boundaries: empty, one byte, exactly one piece,
// one piece plus a byte.
func TestDfgetPieceBoundaries(t *testing.T) {
	o := newOrigin(t)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()
	for _, n := range []int{0, 1, 4194299, 4194300} {
		data := randomData(n, uint64(n)+99)
		url := o.add("/b"+strconv.Itoa(n), data)
		dst := filepath.Join(out, strconv.Itoa(n))
		if r := p.run(sn, "-u", url, "-o", dst, "--notbs"); r.code != 0 || !strings.Contains(r.stdout, "length:"+strconv.Itoa(n)+" ") {
			t.Fatalf("%d bytes: exit %d %s", n, r.code, r.stdout)
		}
		fileEquals(t, dst, data)
	}
}

// A Range header is honoured through the supernode and on fallback.
func TestDfgetRangeHeader(t *testing.T) {
	o := newOrigin(t)
	data := randomData(6<<20, 7)
	url := o.add("/range.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()
	want := data[1000 : 5<<20]
	hdr := fmt.Sprintf("Range: bytes=1000-%d", 5<<20-1)
	if r := p.run(sn, "-u", url, "-o", filepath.Join(out, "p2p"), "--header", hdr); r.code != 0 {
		t.Fatalf("p2p: exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, filepath.Join(out, "p2p"), want)
	down := &supernode{api: FreePort(t)}
	if r := p.run(down, "-u", url, "-o", filepath.Join(out, "bs"), "--header", hdr); r.code != 0 {
		t.Fatalf("fallback: exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, filepath.Join(out, "bs"), want)
}

// A supernode in source-CDN mode: pieces are raw ranges of the source
// (no wrapper, no piece md5), fetched from the origin or from peers.
func TestDfgetSourceCDNPattern(t *testing.T) {
	o := newOrigin(t)
	data := randomData(10<<20+77, 8)
	url := o.add("/srccdn.bin", data)
	sn := startSupernode(t, t.TempDir(), "--cdn-pattern", "source")
	out := t.TempDir()
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		p := newDfgetPeer(t, ip)
		dst := filepath.Join(out, ip)
		if r := p.run(sn, "-u", url, "-o", dst, "--notbs"); r.code != 0 {
			t.Fatalf("%s: exit %d %s", ip, r.code, r.stdout)
		}
		fileEquals(t, dst, data)
	}
	p := newDfgetPeer(t, "127.0.0.4")
	var got []byte
	r := p.stream(sn, func(r io.Reader) { got, _ = io.ReadAll(r) }, "-u", url, "--notbs")
	if r.code != 0 || string(got) != string(data) {
		t.Fatalf("stream: exit %d, %d bytes: %s", r.code, len(got), r.stderr)
	}
}

// A source of unknown length (chunked): the piece count comes from the
// supernode's finish, in file and stream mode.
func TestDfgetChunkedSource(t *testing.T) {
	o := newOrigin(t)
	data := randomData(9<<20+5, 9)
	url := o.add("/chunked.bin", data)
	o.mu.Lock()
	o.chunked["/chunked.bin"] = true
	o.mu.Unlock()
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	dst := filepath.Join(t.TempDir(), "out")
	if r := p.run(sn, "-u", url, "-o", dst, "--notbs"); r.code != 0 || !strings.Contains(r.stdout, "length:"+strconv.Itoa(len(data))) {
		t.Fatalf("file: exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, dst, data)
	var got []byte
	q := newDfgetPeer(t, "127.0.0.3")
	if r := q.stream(sn, func(r io.Reader) { got, _ = io.ReadAll(r) }, "-u", url, "--notbs"); r.code != 0 || string(got) != string(data) {
		t.Fatalf("stream: exit %d, %d bytes: %s", r.code, len(got), r.stderr)
	}
}
