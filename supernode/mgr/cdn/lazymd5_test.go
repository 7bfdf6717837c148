package cdn

import (
	"context"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// counter is a prometheus.Counter whose Inc the test can read.
type counter struct {
	prometheus.Counter
	n atomic.Int64
}

func (c *counter) Inc() { c.n.Add(1) }

// counted gives m a readable on-demand md5 counter.
func counted(m *Manager) *counter {
	c := &counter{Counter: prometheus.NewCounter(prometheus.CounterOpts{Name: "md5_on_demand"})}
	m.metrics.Md5OnDemand = c
	return c
}

// restarted is a new manager on st, as after a supernode restart.
func restarted(t *testing.T, st *store.Store, p Progress) *Manager {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := New(Config{SourceAllow: loopbackAllow()}, st, p, Metrics{}, log)
	t.Cleanup(m.Close)
	return m
}

// The fill computes no md5. Many pulls asking for the same piece md5 at
// once compute it once, all get the md5 of the wrapped piece on disk, and
// once every piece has one the .md5 sidecar holds them: a restarted
// supernode reads them back without hashing.
func TestLazyMd5OncePerPiece(t *testing.T) {
	o := newOriginT(t, blake3Data())
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	c := counted(m)
	expectRun(p, "l1", 3)
	src := Source{TaskID: "l1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	if _, res := start(t, m, src); !res.OK || res.RealMd5 != "" {
		t.Fatalf("result %+v", res)
	}
	if c.n.Load() != 0 {
		t.Fatal("the fill computed an md5")
	}
	pieces := wrappedPieces(t, st, "l1")
	var wg sync.WaitGroup
	for range 16 {
		for i, w := range pieces {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got := m.PieceMd5("l1", i); got != piece.Md5Value(w) {
					t.Errorf("piece %d md5 %q, want %q", i, got, piece.Md5Value(w))
				}
			}()
		}
	}
	wg.Wait()
	if n := c.n.Load(); n != 3 {
		t.Fatalf("%v md5 computations for 3 pieces asked 16 times each", n)
	}
	meta, err := st.ReadMeta("l1")
	if err != nil {
		t.Fatal(err)
	}
	if md5s, err := st.ReadMd5("l1", meta.Blake3); err != nil || len(md5s) != 3 || md5s[1] != piece.Md5Value(pieces[1]) {
		t.Fatalf(".md5 sidecar %v: %v", md5s, err)
	}

	m2 := restarted(t, st, p)
	c2 := counted(m2)
	expectRun(p, "l1", 3)
	if started, res := start(t, m2, src); !started.CacheHit || !res.OK {
		t.Fatalf("reuse %+v %+v", started, res)
	}
	for i, w := range pieces {
		if got := m2.PieceMd5("l1", i); got != piece.Md5Value(w) {
			t.Fatalf("after restart: piece %d md5 %q", i, got)
		}
	}
	if n := c2.n.Load(); n != 0 {
		t.Fatalf("%v md5s recomputed after a restart with a full sidecar", n)
	}
}

// A cache restarted before any md5 was asked (its .md5 sidecar has no
// entries) computes them on demand from the file, never "".
func TestLazyMd5AfterRestartWithoutEntries(t *testing.T) {
	m, st, p, src := filledCache(t, "l2")
	m.Close()
	m2 := restarted(t, st, p)
	expectRun(p, "l2", 3)
	if started, res := start(t, m2, src); !started.CacheHit || !res.OK {
		t.Fatalf("reuse %+v %+v", started, res)
	}
	for i, w := range wrappedPieces(t, st, "l2") {
		if got := m2.PieceMd5("l2", i); got != piece.Md5Value(w) {
			t.Fatalf("piece %d md5 %q", i, got)
		}
	}
	if got, err := m2.FileMd5(context.Background(), "l2"); err != nil || got != piece.Md5Hex(blake3Data()) {
		t.Fatalf("FileMd5 %q %v", got, err)
	}
	if meta, err := st.ReadMeta("l2"); err != nil || meta.RealMd5 != piece.Md5Hex(blake3Data()) {
		t.Fatalf("meta realMd5 not recorded: %+v %v", meta, err)
	}
}

// A cache damaged after the fill is never blessed with a fresh md5: the
// bytes read back fail their BLAKE3 digest, the piece gets no md5 (so it
// is not offered) and the whole-file md5 is an error; intact pieces still
// get theirs.
func TestLazyMd5RefusesDamagedCache(t *testing.T) {
	m, st, _, _ := filledCache(t, "l3")
	pieces := wrappedPieces(t, st, "l3")
	f, err := os.OpenFile(st.DataPath("l3"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XX"), int64(piece.DefaultSize)+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := m.PieceMd5("l3", 1); got != "" {
		t.Fatalf("damaged piece got md5 %q", got)
	}
	if got := m.PieceMd5("l3", 0); got != piece.Md5Value(pieces[0]) {
		t.Fatalf("intact piece md5 %q", got)
	}
	if got, err := m.FileMd5(context.Background(), "l3"); err == nil {
		t.Fatalf("FileMd5 of a damaged cache = %q", got)
	}
}

// An expected sha256 is checked in the fill: the right one passes and is
// recorded; a wrong one fails the fetch and the file is not kept as good
// (not reused: the next fetch reads the source whole). A complete cache
// that was never checked against the digest a task now carries is fetched
// again rather than reused unchecked; one checked against it is reused.
func TestFillChecksExpectedSha256(t *testing.T) {
	data := blake3Data()
	o := newOriginT(t, data)
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	right, wrong := digest.Sum(digest.SHA256, data), digest.Sum(digest.SHA256, []byte("other"))
	src := Source{TaskID: "s1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}

	p.EXPECT().ResetCDN("s1")
	p.EXPECT().SetCDNPiece("s1", gomock.Any()).Times(3)
	p.EXPECT().FinishCDN("s1", 0, false)
	bad := src
	bad.Digest = wrong
	if _, res := start(t, m, bad); res.OK || res.Err == nil {
		t.Fatalf("wrong digest: %+v", res)
	}
	if meta, err := st.ReadMeta("s1"); err != nil || !meta.Finish || meta.Success {
		t.Fatalf("meta after a mismatch %+v %v", meta, err)
	}

	expectRun(p, "s1", 3)
	good := src
	good.Digest = right
	if started, res := start(t, m, good); started.CacheHit || !res.OK {
		t.Fatalf("right digest: %+v %+v", started, res)
	}
	if meta, err := st.ReadMeta("s1"); err != nil || meta.Sha256 != right.String() || meta.RealMd5 != "" {
		t.Fatalf("meta %+v %v", meta, err)
	}
	expectRun(p, "s1", 3)
	if started, res := start(t, m, good); !started.CacheHit || !res.OK {
		t.Fatalf("checked cache not reused: %+v %+v", started, res)
	}

	// The same file cached without a digest, then asked for with one.
	expectRun(p, "s2", 3)
	plain := Source{TaskID: "s2", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	if _, res := start(t, m, plain); !res.OK {
		t.Fatalf("plain: %+v", res)
	}
	plain.Digest = wrong
	p.EXPECT().ResetCDN("s2")
	p.EXPECT().SetCDNPiece("s2", gomock.Any()).Times(3)
	p.EXPECT().FinishCDN("s2", 0, false)
	if started, res := start(t, m, plain); started.CacheHit || res.OK {
		t.Fatalf("unchecked cache reused for a digest: %+v %+v", started, res)
	}
}

// Damage found on reading a cache back for a Dragonfly 1.x client (a
// piece's md5, the whole-file md5) is reported with the wrapped range of
// the damaged piece, so the cache is dropped: such a client is never
// offered the piece, so it never reports it itself. Intact pieces are not
// reported; a missing file is.
func TestLazyMd5ReportsDamage(t *testing.T) {
	m, st, _, _ := filledCache(t, "l4")
	dmg := NewMockDamage(gomock.NewController(t))
	m.cfg.Damage = dmg
	size := st.DataSize("l4")
	f, err := os.OpenFile(st.DataPath("l4"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XX"), int64(piece.DefaultSize)+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rng1 := piece.Range(1, piece.DefaultSize, size)
	dmg.EXPECT().CacheDamaged("l4", rng1)
	if got := m.PieceMd5("l4", 1); got != "" {
		t.Fatalf("damaged piece got md5 %q", got)
	}
	if got := m.PieceMd5("l4", 0); got == "" {
		t.Fatal("intact piece got no md5")
	}
	dmg.EXPECT().CacheDamaged("l4", rng1)
	if got, err := m.FileMd5(context.Background(), "l4"); err == nil {
		t.Fatalf("FileMd5 of a damaged cache = %q", got)
	}
	if err := os.Remove(st.DataPath("l4")); err != nil {
		t.Fatal(err)
	}
	dmg.EXPECT().CacheDamaged("l4", piece.Range(2, piece.DefaultSize, size))
	if got := m.PieceMd5("l4", 2); got != "" {
		t.Fatalf("piece of a missing file got md5 %q", got)
	}
}

// A whole-file md5 that failed for a reason that may pass (here the cache
// path is briefly a directory: reads fail, nothing is damaged) is neither
// kept for later clients nor reported as damage: the next asker computes
// it again and gets it.
func TestFileMd5RetriesAfterTransientError(t *testing.T) {
	m, st, _, _ := filledCache(t, "l5")
	m.cfg.Damage = NewMockDamage(gomock.NewController(t)) // strict: no report expected
	path := st.DataPath("l5")
	if err := os.Rename(path, path+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := m.FileMd5(context.Background(), "l5"); err == nil {
		t.Fatalf("FileMd5 with the cache unreadable = %q", got)
	} else {
		t.Logf("first attempt: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".away", path); err != nil {
		t.Fatal(err)
	}
	if got, err := m.FileMd5(context.Background(), "l5"); err != nil || got != piece.Md5Hex(blake3Data()) {
		t.Fatalf("FileMd5 once readable again = %q, %v", got, err)
	}
}
