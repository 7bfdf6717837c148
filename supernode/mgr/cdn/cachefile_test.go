package cdn

import (
	"strconv"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// While a file is written, the piece server may send only whole written
// pieces; a short piece is the last one, and a range past it is clipped.
func TestCacheFileServable(t *testing.T) {
	const ps = 100
	p := NewMockProgress(gomock.NewController(t))
	p.EXPECT().SetCDNPiece(gomock.Any(), gomock.Any()).AnyTimes()
	m, _ := newManager(t, p, 0)
	cf := newCacheFile(ps, 0, nil)
	sum := func(n int) string { return "00:" + strconv.Itoa(n) }
	m.setReady("t", cf, 0, sum(ps), ps, digest.Digest{})
	m.setReady("t", cf, 2, sum(ps), ps, digest.Digest{})
	for _, tc := range []struct {
		start, end int64
		size       int64
		state      int
	}{
		{0, 99, 100, ServeOK},
		{0, 100, 0, ServeNotReady}, // piece 1 is not written
		{200, 299, 300, ServeOK},   // a later piece may be ready first
		{200, 300, 0, ServeNotReady},
		{-1, 5, 0, ServeNotReady},
		{50, 10, 0, ServeNotReady},
	} {
		if size, state := cf.servable(tc.start, tc.end); size != tc.size || state != tc.state {
			t.Errorf("servable(%d, %d) = %d, %d; want %d, %d", tc.start, tc.end, size, state, tc.size, tc.state)
		}
	}
	m.setReady("t", cf, 1, sum(ps), ps, digest.Digest{})
	m.setReady("t", cf, 3, sum(40), 40, digest.Digest{}) // the short last piece
	if size, state := cf.servable(300, 399); size != 340 || state != ServeOK {
		t.Errorf("range past the short last piece: %d, %d; want clipped to 340", size, state)
	}
	if got, _ := cf.digests(4); len(got) != 4 || got[3] != sum(40) {
		t.Errorf("digests %v", got)
	}

	cf.close(true, 340)
	if size, state := cf.servable(0, 1<<40); size != 340 || state != ServeOK || cf.running() {
		t.Errorf("complete file: %d, %d, running %v", size, state, cf.running())
	}
	failed := newCacheFile(ps, 0, nil)
	failed.close(false, 0)
	src := newCacheFile(ps, 1, nil)
	src.source = true
	m.setReady("s", src, 0, piece.Md5Value([]byte("x")), 1, digest.Sum(digest.BLAKE3, []byte("x")))
	for name, f := range map[string]*cacheFile{"failed": failed, "source pattern": src} {
		if _, state := f.servable(0, 0); state != ServeNotFound {
			t.Errorf("%s file servable: %d", name, state)
		}
	}
}
