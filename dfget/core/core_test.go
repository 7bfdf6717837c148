package core

import (
	"bytes"
	"context"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/uploader"
)

func content(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func origin(t *testing.T, body []byte) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/file" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "file", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func testConfig(t *testing.T, url, node string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.New()
	cfg.URL = url
	cfg.Output = filepath.Join(dir, "out")
	cfg.Home = filepath.Join(dir, "home")
	cfg.IP = "127.0.0.1"
	cfg.PropertyFile = filepath.Join(dir, "none.yml")
	cfg.Timeout = 30 * time.Second
	// Never exec the test binary as the peer server.
	cfg.ServerExecutable = "/bin/false"
	if err := cfg.Nodes.Set(node); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func run(t *testing.T, cfg *config.Config, data io.Writer) (int, string) {
	t.Helper()
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	code := Run(context.Background(), cfg, IO{Data: data, Console: &console})
	return code, console.String()
}

// peerServer runs a peer server in this process for cfg's home and
// records it in host.meta, so the download reuses it instead of spawning.
func peerServer(t *testing.T, cfg *config.Config) {
	t.Helper()
	l, err := uploader.Listen("127.0.0.1", 0)
	if err != nil {
		l, err = net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := uploader.NewServer(uploader.ServerConfig{IP: "127.0.0.1", MetaPath: cfg.MetaPath(), DataDir: cfg.DataDir(),
		ExpireTime: time.Minute, AliveTime: time.Minute}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx, l, io.Discard) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for uploader.ReadMeta(cfg.MetaPath()).ServicePort == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func mustSame(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d-byte source", path, len(got), len(want))
	}
}

const pieceContent = 4194299

func TestCDNPatternDownload(t *testing.T) {
	body := content(2*pieceContent + 1000)
	o := origin(t, body)
	sn := newFakeSupernode(t, body)
	cfg := testConfig(t, o.URL+"/file", sn.node())
	cfg.Pattern = config.PatternCDN
	code, out := run(t, cfg, nil)
	if code != 0 || !strings.Contains(out, "download SUCCESS") || !strings.Contains(out, "reason:0") {
		t.Fatalf("exit %d: %s", code, out)
	}
	mustSame(t, cfg.Output, body)
	if sn.metrics != 1 {
		t.Errorf("metrics reported %d times, want once", sn.metrics)
	}
	if ents, _ := os.ReadDir(filepath.Dir(cfg.Output)); len(ents) != 2 { // out and home
		t.Errorf("leftovers beside the output: %v", ents)
	}
}

func TestP2PSecondPeerFetchesFromFirst(t *testing.T) {
	body := content(3*pieceContent + 17)
	o := origin(t, body)
	sn := newFakeSupernode(t, body)
	cfg1 := testConfig(t, o.URL+"/file", sn.node())
	peerServer(t, cfg1)
	if code, out := run(t, cfg1, nil); code != 0 {
		t.Fatalf("first: exit %d: %s", code, out)
	}
	mustSame(t, cfg1.Output, body)
	hits := sn.cdnHits
	cfg2 := testConfig(t, o.URL+"/file", sn.node())
	peerServer(t, cfg2)
	if code, out := run(t, cfg2, nil); code != 0 {
		t.Fatalf("second: exit %d: %s", code, out)
	}
	mustSame(t, cfg2.Output, body)
	if sn.cdnHits != hits {
		t.Errorf("second peer fetched %d pieces from the CDN, want all from the first peer", sn.cdnHits-hits)
	}
}

func TestCorruptPieceIsReportedAndRefetched(t *testing.T) {
	body := content(3*pieceContent + 5)
	o := origin(t, body)
	sn := newFakeSupernode(t, body)
	sn.corrupt[1] = true
	cfg := testConfig(t, o.URL+"/file", sn.node())
	cfg.Pattern = config.PatternCDN
	cfg.NotBS = true
	if code, out := run(t, cfg, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	mustSame(t, cfg.Output, body)
	if len(sn.errors) != 1 || !strings.Contains(sn.errors[0], "FILE_MD5_NOT_MATCH") {
		t.Errorf("piece errors reported: %v", sn.errors)
	}
}

func TestSupernodeDown(t *testing.T) {
	body := content(1000)
	o := origin(t, body)
	cfg := testConfig(t, o.URL+"/file", "127.0.0.1:1")
	cfg.NotBS = true
	if code, out := run(t, cfg, nil); code != config.ExitDownloadError || !strings.Contains(out, "reason:1001") {
		t.Fatalf("--notbs: exit %d: %s", code, out)
	}
	if _, err := os.Stat(cfg.Output); !os.IsNotExist(err) {
		t.Fatalf("output exists after a failed download: %v", err)
	}
	cfg = testConfig(t, o.URL+"/file", "127.0.0.1:1")
	if code, out := run(t, cfg, nil); code != 0 || !strings.Contains(out, "reason:1") {
		t.Fatalf("fallback: exit %d: %s", code, out)
	}
	mustSame(t, cfg.Output, body)
}

// A supernode that fails mid-download: dfget migrates to the next node and
// finishes there, without falling back to the source.
func TestMigrationToNextSupernode(t *testing.T) {
	body := content(2*pieceContent + 3)
	o := origin(t, nil) // a source fallback would fail
	bad := newFakeSupernode(t, body)
	bad.failTask = true
	good := newFakeSupernode(t, body)
	good.refuse = func() bool { bad.mu.Lock(); defer bad.mu.Unlock(); return bad.pulls == 0 }
	cfg := testConfig(t, o.URL+"/file", bad.node()+","+good.node())
	cfg.Pattern = config.PatternCDN
	code, out := run(t, cfg, nil)
	if code != 0 || !strings.Contains(out, "migrated to node:"+good.node()) || !strings.Contains(out, "reason:0") {
		t.Fatalf("exit %d: %s", code, out)
	}
	mustSame(t, cfg.Output, body)
}

// failoverPair is a supernode that fails once a client has failAfter
// pieces, a second one that takes registrations only after the first was
// used, and a config naming both, whose source a fallback cannot use.
func failoverPair(t *testing.T, body []byte, failAfter int) (bad, good *fakeSupernode, cfg *config.Config) {
	t.Helper()
	o := origin(t, nil)
	bad = newFakeSupernode(t, body)
	bad.failAfter = failAfter
	good = newFakeSupernode(t, body)
	good.refuse = func() bool { bad.mu.Lock(); defer bad.mu.Unlock(); return bad.pulls == 0 }
	return bad, good, testConfig(t, o.URL+"/file", bad.node()+","+good.node())
}

// A download whose supernode fails goes on at the next node with the
// pieces already written: the next node is told about them, not asked for
// them again, and the file is exact.
func TestMigrationKeepsWrittenPieces(t *testing.T) {
	body := content(6*pieceContent + 11)
	bad, good, cfg := failoverPair(t, body, 3)
	cfg.Pattern = config.PatternCDN
	code, out := run(t, cfg, nil)
	if code != 0 || !strings.Contains(out, "migrated to node:"+good.node()) {
		t.Fatalf("exit %d: %s", code, out)
	}
	mustSame(t, cfg.Output, body)
	bad.mu.Lock()
	defer bad.mu.Unlock()
	good.mu.Lock()
	defer good.mu.Unlock()
	// The pieces reported written to the failing node (in-flight fetches
	// it served were cancelled by the failure and are fetched again).
	written := 0
	for i := range bad.clients[bad.lastCID()].done {
		written++
		if good.served[i] != 0 {
			t.Errorf("piece %d, written before the migration, fetched again from the next node", i)
		}
		if !good.clients[good.lastCID()].done[i] {
			t.Errorf("piece %d, written before the migration, not confirmed to the next node", i)
		}
	}
	if written < 3 {
		t.Errorf("%d pieces written before the migration, want at least 3", written)
	}
}

func TestSource404LeavesNothing(t *testing.T) {
	o := origin(t, nil)
	cfg := testConfig(t, o.URL+"/missing", "127.0.0.1:1")
	if err := os.WriteFile(cfg.Output, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, cfg, nil)
	if code != config.ExitDownloadError || !strings.Contains(out, "404") {
		t.Fatalf("exit %d: %s", code, out)
	}
	mustSame(t, cfg.Output, []byte("keep"))
}

// An unusable <home>/meta or <home>/data (a file is there) fails the
// prepare step, as in Dragonfly 1.x: FAIL(1101), exit 77, naming the
// path, before any network work. --pattern source uses neither and
// downloads anyway.
func TestWorkspaceDirUnusable(t *testing.T) {
	body := content(1000)
	o := origin(t, body)
	for _, tc := range []struct {
		dir     func(*config.Config) string
		pattern string
		code    int
	}{
		{(*config.Config).DataDir, config.PatternP2P, config.ExitPrepare},
		{(*config.Config).MetaDir, config.PatternCDN, config.ExitPrepare},
		{(*config.Config).DataDir, config.PatternSource, 0},
	} {
		cfg := testConfig(t, o.URL+"/file", "127.0.0.1:1")
		cfg.Pattern = tc.pattern
		if err := os.MkdirAll(cfg.Home, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tc.dir(cfg), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := run(t, cfg, nil)
		if code != tc.code {
			t.Fatalf("%s, --pattern %s: exit %d, want %d: %s", tc.dir(cfg), tc.pattern, code, tc.code, out)
		}
		if tc.code == 0 {
			mustSame(t, cfg.Output, body)
			continue
		}
		if !strings.Contains(out, "download FAIL(1101)") || !strings.Contains(out, tc.dir(cfg)) ||
			!strings.Contains(out, "not a directory") {
			t.Fatalf("%s: %s", tc.dir(cfg), out)
		}
	}
}

func TestStream(t *testing.T) {
	for _, n := range []int{0, 1, pieceContent, 3*pieceContent + 9} {
		body := content(n)
		o := origin(t, body)
		sn := newFakeSupernode(t, body)
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Stream, cfg.Output, cfg.WindowSize, cfg.NotBS = true, "-", 2, true
		peerServer(t, cfg)
		var buf bytes.Buffer
		if code, out := run(t, cfg, &buf); code != 0 {
			t.Fatalf("%d bytes: exit %d: %s", n, code, out)
		}
		if !bytes.Equal(buf.Bytes(), body) {
			t.Fatalf("%d bytes: stream differs (%d bytes)", n, buf.Len())
		}
		if ents, _ := os.ReadDir(cfg.DataDir()); len(ents) != 0 {
			t.Errorf("stream mode wrote to disk: %v", ents)
		}
	}
}

// streamMigrates streams cfg's download with a peer server and checks that
// it moved to good and came out exact.
func streamMigrates(t *testing.T, cfg *config.Config, good *fakeSupernode, body []byte) {
	t.Helper()
	peerServer(t, cfg)
	var buf bytes.Buffer
	code, out := run(t, cfg, &buf)
	if code != 0 || !strings.Contains(out, "migrated to node:"+good.node()) {
		t.Fatalf("exit %d: %s", code, out)
	}
	if !bytes.Equal(buf.Bytes(), body) {
		t.Fatalf("stream differs (%d of %d bytes)", buf.Len(), len(body))
	}
}

// A stream whose supernode fails moves to the next node and goes on after
// the pieces written. It asks that node for no startPiece: whether it
// would honour one (an older Damselfly one) or not (ours, a Dragonfly
// 1.x one), it offers the
// written pieces again, and each is confirmed once its digest is the one
// it was verified with, never fetched; it is reported with share=0, as
// the stream cache reopened for that node holds none of them. The stream
// is exact.
func TestStreamMigrationConfirmsWrittenPieces(t *testing.T) {
	body := content(6*pieceContent + 5)
	for _, honour := range []bool{false, true} {
		bad, good, cfg := failoverPair(t, body, 3)
		good.honourStart = honour
		cfg.Stream, cfg.Output, cfg.WindowSize, cfg.NotBS = true, "-", 1, true
		streamMigrates(t, cfg, good, body)
		bad.mu.Lock()
		written := maps.Clone(bad.clients[bad.lastCID()].done)
		bad.mu.Unlock()
		good.mu.Lock()
		if good.startPiece != 0 {
			t.Errorf("honour %v: registered with the next node at startPiece %d", honour, good.startPiece)
		}
		if len(written) < 3 {
			t.Errorf("honour %v: %d pieces reported to the first node, want 3: nothing tested", honour, len(written))
		}
		for i := range written {
			if good.served[i] != 0 {
				t.Errorf("honour %v: written piece %d fetched again from the next node", honour, i)
			}
			if !good.clients[good.lastCID()].done[i] || !good.unshared[i] {
				t.Errorf("honour %v: written piece %d not confirmed to the next node with share=0", honour, i)
			}
		}
		good.mu.Unlock()
	}
}

// A next node that cuts the file into other pieces cannot continue the
// stream by piece number: it goes on from the source at the byte where it
// stopped, exact, and nothing is fetched from that node.
func TestStreamMigrationToOtherPieceSizeFallsBack(t *testing.T) {
	body := content(6*pieceContent + 5)
	o := origin(t, body)
	bad := newFakeSupernode(t, body)
	bad.failAfter = 2
	good := newFakeSupernodeSize(t, body, bad.size/2)
	good.refuse = func() bool { bad.mu.Lock(); defer bad.mu.Unlock(); return bad.pulls == 0 }
	cfg := testConfig(t, o.URL+"/file", bad.node()+","+good.node())
	cfg.Stream, cfg.Output, cfg.WindowSize = true, "-", 1
	streamMigrates(t, cfg, good, body)
	good.mu.Lock()
	defer good.mu.Unlock()
	if good.cdnHits != 0 {
		t.Errorf("%d pieces fetched from the node with the other piece size", good.cdnHits)
	}
}

// A stream P2P wrote the head of, whose supernode then fails with no node
// left, goes on from the source only if the source still holds a file of
// the registered length. Here the origin now holds a longer (or shorter)
// one: its tail would follow the old head, so the run fails (reason 3,
// exit 80) and the stream ends at the head, which is the old file's.
func TestStreamFallbackRefusesSourceOfOtherLength(t *testing.T) {
	a := content(6*pieceContent + 5)
	for _, b := range [][]byte{content(len(a) + 1000), content(len(a) - 1000)} {
		o := origin(t, b)
		sn := newFakeSupernode(t, a)
		sn.failAfter = 2
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Stream, cfg.Output, cfg.WindowSize = true, "-", 1
		var buf bytes.Buffer
		code, out := run(t, cfg, &buf)
		if code != config.ExitDownloadError || !strings.Contains(out, "reason:3") ||
			!strings.Contains(out, "another version of the file") {
			t.Fatalf("source of %d bytes after a stream of %d: exit %d: %s", len(b), len(a), code, out)
		}
		if buf.Len() == 0 || buf.Len() >= len(a) || !bytes.Equal(buf.Bytes(), a[:buf.Len()]) {
			t.Fatalf("source of %d bytes: the stream is not a head of the registered file (%d bytes)", len(b), buf.Len())
		}
	}
}

type closingWriter struct{ left int }

func (c *closingWriter) Write(b []byte) (int, error) {
	if len(b) > c.left {
		n := c.left
		c.left = 0
		return n, syscall.EPIPE
	}
	c.left -= len(b)
	return len(b), nil
}

func TestStreamConsumerGone(t *testing.T) {
	body := content(3*pieceContent + 9)
	o := origin(t, body)
	sn := newFakeSupernode(t, body)
	cfg := testConfig(t, o.URL+"/file", sn.node())
	cfg.Stream, cfg.Output = true, "-"
	code, out := run(t, cfg, &closingWriter{left: 1000})
	if code != 0 || !strings.Contains(out, "STOPPED") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if len(sn.down) == 0 {
		t.Error("no service-down after the consumer left")
	}
}

var _ = types.CodeSuccess

// A reader that leaves while the stream comes from the source (no
// supernode): still a clean stop.
func TestStreamFallbackConsumerGone(t *testing.T) {
	body := content(3 << 20)
	o := origin(t, body)
	cfg := testConfig(t, o.URL+"/file", "127.0.0.1:1")
	cfg.Stream, cfg.Output = true, "-"
	code, out := run(t, cfg, &closingWriter{left: 1000})
	if code != 0 || !strings.Contains(out, "STOPPED") {
		t.Fatalf("exit %d: %s", code, out)
	}
	var buf bytes.Buffer
	cfg = testConfig(t, o.URL+"/file", "127.0.0.1:1")
	cfg.Stream, cfg.Output = true, "-"
	if code, out := run(t, cfg, &buf); code != 0 || !bytes.Equal(buf.Bytes(), body) {
		t.Fatalf("fallback stream: exit %d, %d bytes: %s", code, buf.Len(), out)
	}
}

// Every registration asks for BLAKE3 piece digests. A Dragonfly 1.x
// supernode ignores the field and gives none: pieces are then checked
// with md5 as before, and a corrupt one is reported with its md5. A
// supernode that gives them gets a corrupt piece reported with BLAKE3
// digests. Either way the download is byte-correct.
func TestPieceDigestNegotiation(t *testing.T) {
	for _, blake3 := range []bool{false, true} {
		body := content(3*pieceContent + 5)
		o := origin(t, body)
		sn := newFakeSupernode(t, body)
		sn.blake3 = blake3
		sn.corrupt[1] = true
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Pattern = config.PatternCDN
		cfg.NotBS = true
		if code, out := run(t, cfg, nil); code != 0 {
			t.Fatalf("blake3 %v: exit %d: %s", blake3, code, out)
		}
		mustSame(t, cfg.Output, body)
		if len(sn.digests) != 1 || sn.digests[0] != "blake3" {
			t.Errorf("blake3 %v: registrations asked for %q, want [blake3]", blake3, sn.digests)
		}
		// md5 goes as the bare hex Dragonfly 1.x reports, BLAKE3 by name.
		if len(sn.errors) != 1 || !strings.Contains(sn.errors[0], "FILE_MD5_NOT_MATCH") ||
			strings.Contains(sn.errors[0], "expectedMd5=blake3%3A") != blake3 || strings.Contains(sn.errors[0], "md5%3A") {
			t.Errorf("blake3 %v: piece errors reported: %v", blake3, sn.errors)
		}
	}
}
