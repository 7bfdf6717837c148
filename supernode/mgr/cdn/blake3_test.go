package cdn

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"testing"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// wrappedPieces reads the cache file of id back from disk, cut into its
// wrapped pieces.
func wrappedPieces(t *testing.T, st *store.Store, id string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(st.DataPath(id))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for off := 0; off < len(raw); off += int(piece.DefaultSize) {
		out = append(out, raw[off:min(off+int(piece.DefaultSize), len(raw))])
	}
	return out
}

// checkBlake3 asserts that the CDN's BLAKE3 digest of every piece is the
// BLAKE3 of the wrapped bytes on disk, and that the .blake3 sidecar holds
// the same digests, keyed by the meta's content key.
func checkBlake3(t *testing.T, m *Manager, st *store.Store, id string, total int) {
	t.Helper()
	pieces := wrappedPieces(t, st, id)
	if len(pieces) != total {
		t.Fatalf("%d pieces on disk, want %d", len(pieces), total)
	}
	meta, err := st.ReadMeta(id)
	if err != nil || meta.Blake3 == "" {
		t.Fatalf("meta %+v: %v", meta, err)
	}
	side, err := st.ReadBlake3(id, meta.Blake3)
	if err != nil || len(side) != total {
		t.Fatalf(".blake3 sidecar: %v %v", side, err)
	}
	for i, w := range pieces {
		want := digest.Sum(digest.BLAKE3, w)
		if got := m.PieceDigest(id, i); got != want {
			t.Fatalf("piece %d: blake3 %v, want %v", i, got, want)
		}
		if side[i] != want {
			t.Fatalf("piece %d: sidecar blake3 %v, want %v", i, side[i], want)
		}
	}
}

func blake3Data() []byte {
	data := make([]byte, 2*int(piece.ContentSize(piece.DefaultSize))+321)
	for i := range data {
		data[i] = byte(i * 31)
	}
	return data
}

// The cdn pattern: each piece's BLAKE3 digest is computed with its md5 in
// the writer pool, over the wrapped piece, and kept in the .blake3 sidecar.
func TestCDNBlake3OfWrappedPieces(t *testing.T) {
	o := newOriginT(t, blake3Data())
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	expectRun(p, "b1", 3)
	_, res := start(t, m, Source{TaskID: "b1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"})
	if !res.OK {
		t.Fatalf("result %+v", res)
	}
	checkBlake3(t, m, st, "b1", 3)
	if d := m.PieceDigest("b1", 3); !d.IsZero() {
		t.Fatalf("piece past the end has digest %v", d)
	}
	// PieceAt: each written piece at its offset, the short last one with
	// its own length; nothing between pieces, past the end or unknown.
	ps := int64(piece.DefaultSize)
	for i, w := range wrappedPieces(t, st, "b1") {
		sp, ok := m.PieceAt("b1", int64(i)*ps)
		want := Span{Num: i, Offset: int64(i) * ps, Length: int64(len(w)), PieceSize: piece.DefaultSize, Digest: digest.Sum(digest.BLAKE3, w)}
		if !ok || sp != want {
			t.Fatalf("piece at %d: %+v %t, want %+v", int64(i)*ps, sp, ok, want)
		}
	}
	for _, q := range []struct {
		id  string
		off int64
	}{{"b1", 1}, {"b1", -ps}, {"b1", 3 * ps}, {"b1", 1 << 62}, {"none", 0}} {
		if sp, ok := m.PieceAt(q.id, q.off); ok {
			t.Fatalf("piece of %s at %d: %+v", q.id, q.off, sp)
		}
	}
}

// oldCache fills task id's cache, then makes it look like one written by
// the previous version (no .blake3 sidecar, no content key, the file md5 in
// the meta and the .md5 sidecar keyed by it), applies damage,
// and returns a new manager on the same store, as after a restart, with
// the source.
func oldCache(t *testing.T, id string, damage func(*store.Store)) (*Manager, *store.Store, Source) {
	t.Helper()
	m, st, p, src := filledCache(t, id)
	if err := os.Remove(st.DataPath(id) + ".blake3"); err != nil {
		t.Fatal(err)
	}
	meta, err := st.ReadMeta(id)
	if err != nil {
		t.Fatal(err)
	}
	var md5s []string
	for _, w := range wrappedPieces(t, st, id) {
		md5s = append(md5s, piece.Md5Value(w))
	}
	meta.Blake3, meta.RealMd5 = "", piece.Md5Hex(blake3Data())
	if err := st.WriteMeta(meta); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteMd5(id, md5s, meta.RealMd5); err != nil {
		t.Fatal(err)
	}
	damage(st)
	m.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	m2 := New(Config{SourceAllow: loopbackAllow()}, st, p, Metrics{}, log)
	t.Cleanup(m2.Close)
	expectRun(p, id, 3)
	return m2, st, src
}

// A cache written by the previous version has a .md5 sidecar and no
// .blake3 one. A new supernode reusing it re-hashes the file once: every
// piece gets the BLAKE3 of its bytes on disk, and the sidecar is written.
func TestOldCacheWithoutBlake3IsRehashed(t *testing.T) {
	m, st, src := oldCache(t, "b2", func(*store.Store) {})
	started, res := start(t, m, src)
	if !started.CacheHit || !res.OK {
		t.Fatalf("reuse: %+v %+v", started, res)
	}
	checkBlake3(t, m, st, "b2", 3)
}

// A cache without a .blake3 sidecar whose data was damaged is not reused
// with digests taken from anywhere but its bytes: the re-hash finds the
// damage and the file is fetched again.
func TestOldCacheDamagedIsRefetched(t *testing.T) {
	m, st, src := oldCache(t, "b3", func(st *store.Store) {
		f, err := os.OpenFile(st.DataPath("b3"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("XX"), int64(piece.DefaultSize)+100); err != nil {
			t.Fatal(err)
		}
	})
	started, res := start(t, m, src)
	if started.CacheHit || !res.OK {
		t.Fatalf("damaged old cache reused: %+v %+v", started, res)
	}
	checkBlake3(t, m, st, "b3", 3)
}

// Remove deletes the .blake3 sidecar with the others.
func TestRemoveDeletesBlake3Sidecar(t *testing.T) {
	_, st, _, _ := filledCache(t, "b4")
	if err := st.Remove("b4"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.DataPath("b4") + ".blake3"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf(".blake3 after remove: %v", err)
	}
}

// filledCache fetches blake3Data into task id's cache with a new manager
// and returns it, its store, its progress mock and the source.
func filledCache(t *testing.T, id string) (*Manager, *store.Store, *MockProgress, Source) {
	t.Helper()
	o := newOriginT(t, blake3Data())
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	expectRun(p, id, 3)
	src := Source{TaskID: id, RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	if _, res := start(t, m, src); !res.OK {
		t.Fatalf("result %+v", res)
	}
	return m, st, p, src
}
