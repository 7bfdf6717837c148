package e2e

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dfget --stream writes exactly the origin's bytes to stdout for sizes
// around the piece boundaries, and writes nothing to disk.
func TestDfgetStreamSizes(t *testing.T) {
	o := newOrigin(t)
	sn := startSupernode(t, t.TempDir())
	for _, n := range []int{0, 1, 4194299, 4194300, 40<<20 + 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			data := randomData(n, uint64(n)+10)
			url := o.add("/s"+strconv.Itoa(n), data)
			p := newDfgetPeer(t, "127.0.0.2")
			var got [32]byte
			r := p.stream(sn, sha256Into(&got), "-u", url, "--notbs", "--window-size", "4")
			if r.code != 0 || !strings.Contains(r.stderr, "download SUCCESS") {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got != sha256.Sum256(data) {
				t.Fatal("stream sha256 differs from the origin's")
			}
			if ents, _ := os.ReadDir(filepath.Join(p.home, "data")); len(ents) != 0 {
				t.Fatalf("stream mode wrote files: %v", ents)
			}
		})
	}
}

// A reader that stops after 1000 bytes (| head -c 1000): dfget ends
// cleanly, without a panic, soon.
func TestDfgetStreamEarlyClose(t *testing.T) {
	o := newOrigin(t)
	data := randomData(40<<20, 21)
	url := o.add("/early.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	r := p.stream(sn, func(r io.Reader) {
		b := make([]byte, 1000)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Errorf("read: %v", err)
		}
		if string(b) != string(data[:1000]) {
			t.Error("first 1000 bytes differ")
		}
		r.(io.Closer).Close()
	}, "-u", url, "--notbs")
	if r.code != 0 || strings.Contains(r.stderr, "panic") || !strings.Contains(r.stderr, "STOPPED") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.duration > 30*time.Second {
		t.Fatalf("took %v to stop", r.duration)
	}
}

// --md5 in stream mode: a wrong md5 ends with a non-zero exit.
func TestDfgetStreamMd5Mismatch(t *testing.T) {
	o := newOrigin(t)
	url := o.add("/md5.bin", randomData(5<<20, 22))
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	r := p.stream(sn, func(r io.Reader) { _, _ = io.Copy(io.Discard, r) }, "-u", url, "--notbs",
		"--md5", "00000000000000000000000000000000")
	if r.code == 0 {
		t.Fatalf("exit 0 with a wrong --md5: %s", r.stderr)
	}
}

// A stream alone on its task (every other client has the whole file) keeps
// nothing for others: the supernode marks its pieces noShare, none goes to
// the peer server's stream cache, so no cache report reaches the supernode
// beyond the stream's support probe, and the bytes are exact.
// TestDfgetStreamMixedSwarm is the other side: with a client still lacking
// pieces, streams share.
func TestDfgetStreamAloneSkipsStreamCache(t *testing.T) {
	o := newOrigin(t)
	data := randomData(24<<20+5, 31)
	url := o.add("/alone.bin", data)
	sn := startSupernode(t, t.TempDir())
	fp := newDfgetPeer(t, "127.0.0.5")
	dst := filepath.Join(t.TempDir(), "file")
	if r := fp.run(sn, "-u", url, "-o", dst, "--notbs"); r.code != 0 {
		t.Fatalf("file-mode download: exit %d: %s", r.code, r.stdout)
	}
	fileEquals(t, dst, data)
	const reports = `dragonfly_supernode_http_requests_total{code="200",handler="/peer/piece/stream"}`
	before := metricValue(t, sn, reports)
	p := newDfgetPeer(t, "127.0.0.6")
	var got [32]byte
	r := p.stream(sn, sha256Into(&got), "-u", url, "--notbs", "--verbose", "--window-size", "4")
	if r.code != 0 || got != sha256.Sum256(data) {
		t.Fatalf("exit %d or wrong bytes: %s", r.code, r.stderr)
	}
	if n := metricValue(t, sn, reports) - before; n > 1 {
		t.Errorf("a lone stream made %v stream-cache calls to the supernode, want only its probe", n)
	}
}

// Two streaming clients and one file-mode client in one swarm all get the
// right bytes.
func TestDfgetStreamMixedSwarm(t *testing.T) {
	o := newOrigin(t)
	data := randomData(64<<20, 23)
	url := o.add("/mixed.bin", data)
	sn := startSupernode(t, t.TempDir())
	warm := newClient(t, sn, "127.0.0.9-warm")
	waitCDN(t, sn, warm.register(warm.registerReq(url)).TaskID, time.Minute)
	want := sha256.Sum256(data)
	var wg sync.WaitGroup
	errs := make(chan string, 3)
	var streamers []*dfgetPeer
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		p := newDfgetPeer(t, ip)
		streamers = append(streamers, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got [32]byte
			r := p.stream(sn, sha256Into(&got), "-u", url, "--notbs", "--verbose")
			if r.code != 0 || got != want {
				errs <- ip + ": exit " + strconv.Itoa(r.code) + " or wrong bytes: " + r.stderr
			}
		}()
	}
	fp := newDfgetPeer(t, "127.0.0.4")
	dst := filepath.Join(t.TempDir(), "file")
	wg.Add(1)
	go func() {
		defer wg.Done()
		if r := fp.run(sn, "-u", url, "-o", dst, "--notbs", "--verbose"); r.code != 0 {
			errs <- "file client: exit " + strconv.Itoa(r.code) + " " + r.stdout
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	fileEquals(t, dst, data)
	t.Logf("pieces scheduled from peers %v, from the supernode %v",
		metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="peer"}`),
		metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="supernode"}`))
	// The streamers' pieces reach their peer servers through the shared
	// ring, not HTTP bodies, and other peers fetch them from there.
	fromStreamers := 0
	for _, p := range append(streamers, fp) {
		log := p.clientLog()
		if n := strings.Count(log, "pushing it by HTTP") + strings.Count(log, "pushing pieces by HTTP"); n > 0 {
			t.Errorf("%s pushed %d pieces by HTTP instead of the ring", p.ip, n)
		}
		fromStreamers += strings.Count(log, " from 127.0.0.2: ") + strings.Count(log, " from 127.0.0.3: ")
	}
	notFound := 0
	for _, p := range append(streamers, fp) {
		notFound += strings.Count(p.clientLog(), "piece not found at holder")
	}
	t.Logf("pieces fetched from the streamers' caches: %d; holder answered 404: %d", fromStreamers, notFound)
	if fromStreamers == 0 {
		t.Error("no piece was fetched from a streamer's cache")
	}
}

// The supernode dying mid-stream moves the stream to the next --node, where
// it resumes at the first piece not yet written: the bytes are exact, the
// source is never read by dfget (--notbs), and the second supernode offers
// the pieces already written (for their digests to be checked) but never
// sends one.
func TestDfgetStreamMigratesToNextNode(t *testing.T) {
	o := newOrigin(t)
	data := randomData(48<<20, 25)
	url := o.add("/migrate.bin", data)
	a, b := startSupernode(t, t.TempDir()), startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	scheduled := func(sn *supernode) float64 {
		return metricValue(t, sn, "dragonfly_supernode_pieces_scheduled_total")
	}
	var got [32]byte
	var first, second *supernode
	r := p.stream(nil, func(r io.Reader) {
		h := sha256.New()
		if _, err := io.CopyN(h, r, 6<<20); err != nil {
			t.Errorf("first bytes: %v", err)
		}
		// The node order is weighted-random: stop the one in use.
		first, second = a, b
		if scheduled(a) == 0 {
			first, second = b, a
		}
		_ = first.Stop(5 * time.Second)
		_, _ = io.Copy(h, r)
		copy(got[:], h.Sum(nil))
	}, "-u", url, "--node", Addr(a.api)+","+Addr(b.api), "--window-size", "2", "--locallimit", "20MB", "--notbs")
	if r.code != 0 || got != sha256.Sum256(data) {
		t.Fatalf("exit %d, sha256 match %v: %s", r.code, got == sha256.Sum256(data), r.stderr)
	}
	if !strings.Contains(r.stderr, "migrated to node:"+Addr(second.api)) {
		t.Fatalf("no migration to the second node on the console: %s", r.stderr)
	}
	m := regexp.MustCompile(`stream resumes at piece (\d+)`).FindStringSubmatch(p.clientLog())
	if m == nil {
		t.Fatal("dfget log does not say where the stream resumed")
	}
	start, _ := strconv.Atoi(m[1])
	total := (len(data) + (4<<20 - 5) - 1) / (4<<20 - 5)
	if start < 1 {
		t.Errorf("resumed at piece %d after 6 MiB were written", start)
	}
	sent := metricValue(t, second, "dragonfly_supernode_piece_server_sent_bytes_total")
	if most := float64(total-start) * (4 << 20); sent > most {
		t.Errorf("second node sent %.0f bytes, more than the %d pieces from piece %d on", sent, total-start, start)
	}
	o.mu.Lock()
	ranges := len(o.ranges["/migrate.bin"])
	o.mu.Unlock()
	if ranges != 0 {
		t.Errorf("the origin got %d range requests: the stream fell back to the source", ranges)
	}
	t.Logf("resumed at piece %d of %d on the second node, which scheduled %d and sent %.0f bytes", start, total,
		int(scheduled(second)), sent)
}

// A streaming dfget killed mid-stream (SIGKILL: no chance to drop its
// stream cache) does not keep its peer server alive forever: the server
// drops the cache of a dfget that is gone and idles out after --alivetime.
func TestDfgetStreamKilledClientReleasesServer(t *testing.T) {
	o := newOrigin(t)
	url := o.add("/killed.bin", randomData(48<<20, 26))
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t, "dfget"), p.args(sn, "--stream", "-u", url, "--notbs",
		"--locallimit", "10MB", "--alivetime", "3s")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, out, 4<<20); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	server := p.serverPid()
	if server == 0 {
		t.Fatal("no peer server recorded")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(server, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("peer server %d still running 30 s after its streaming dfget was killed (--alivetime 3s)", server)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(p.serverLog(), "its dfget is gone") {
		t.Errorf("server log does not say it dropped the orphan stream:\n%s", p.serverLog())
	}
}

// P2P failing mid-stream (the supernode dies) continues from the source:
// it reads the file from byte 0, checks the head already streamed against
// the pieces' digests and writes only the rest: no byte repeated or
// skipped.
func TestDfgetStreamFallbackMidway(t *testing.T) {
	o := newOrigin(t)
	data := randomData(48<<20, 24)
	url := o.add("/fallback.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	var got [32]byte
	r := p.stream(sn, func(r io.Reader) {
		h := sha256.New()
		if _, err := io.CopyN(h, r, 6<<20); err != nil {
			t.Errorf("first bytes: %v", err)
		}
		_ = sn.Stop(5 * time.Second)
		_, _ = io.Copy(h, r)
		copy(got[:], h.Sum(nil))
	}, "-u", url, "--window-size", "1", "--locallimit", "20MB")
	if r.code != 0 || got != sha256.Sum256(data) {
		t.Fatalf("exit %d, sha256 match %v: %s", r.code, got == sha256.Sum256(data), r.stderr)
	}
	// With one piece in flight at 20 MB/s the supernode stops about 2 s
	// before the file could be done: a stream that did not fall back
	// tested nothing.
	if !strings.Contains(r.stderr, "from the source") {
		t.Fatalf("stream finished without falling back to the source: %s", r.stderr)
	}
	o.mu.Lock()
	ranges := append([]string(nil), o.ranges["/fallback.bin"]...)
	o.mu.Unlock()
	// The supernode's fill asks for no range either: a Range here is a
	// fallback that took the tail on trust.
	if len(ranges) != 0 {
		t.Fatalf("origin range requests %q, want none: the fallback reads the file from byte 0", ranges)
	}
	if n := o.count("/fallback.bin", http.StatusOK); n < 2 {
		t.Fatalf("origin answered %d whole-file requests, want the fill's and the fallback's", n)
	}
}

// sha256Into is a stream consumer that leaves the sha256 of what it read
// in *sum.
func sha256Into(sum *[32]byte) func(io.Reader) {
	return func(r io.Reader) {
		h := sha256.New()
		_, _ = io.Copy(h, r)
		copy(sum[:], h.Sum(nil))
	}
}
