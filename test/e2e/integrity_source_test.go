package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// --cdn-pattern source with a lying peer: it registers through the open
// API, claims every piece and serves wrong bytes of the right length. The
// supernode now hands out each piece's digest, read once from the source,
// so honest dfgets (with --notbs and without) catch the lie, fetch the
// piece elsewhere and end with the right file; never a wrong file with
// exit 0.
func TestIntegritySourcePatternLyingPeer(t *testing.T) {
	o := newOrigin(t)
	size := 12<<20 + 77
	data := randomData(size, 113)
	url := o.add("/lie.bin", data)
	sn := startSupernode(t, t.TempDir(), "--cdn-pattern", "source")
	out := t.TempDir()
	warmUp(t, sn, url) // only the source and the liar hold pieces now
	var hits atomic.Int64
	fakeHolder(t, sn, url, "127.0.0.5", int64(size), zeroHolder(&hits, func(n int64) int64 { return n }))
	for i, extra := range [][]string{{"--notbs"}, {}, {"--notbs"}} {
		p := newDfgetPeer(t, "127.0.0."+strconv.Itoa(10+i))
		dst := filepath.Join(out, strconv.Itoa(i))
		before := hits.Load()
		r := p.run(sn, append([]string{"-u", url, "-o", dst}, extra...)...)
		failed, reported := failuresFrom(t, p, "127.0.0.5")
		t.Logf("client %d %v: exit %d, liar asked %d times, %d failed, %d reported: %s", i, extra, r.code,
			hits.Load()-before, failed, reported, lastLine(r.stdout))
		if r.code != 0 {
			noFile(t, dst)
			continue
		}
		fileEquals(t, dst, data)
	}
	if hits.Load() == 0 {
		t.Fatal("the supernode never scheduled the lying peer; nothing was tested")
	}
}

// An upper-case --md5 is the same digest: the supernode's CDN accepts it
// and the download stays P2P (with --notbs there is no other way to
// succeed), for a first client and for one that reuses the task.
func TestIntegrityUpperCaseMd5(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5<<20+9, 114)
	url := o.add("/upper.bin", data)
	sn := startSupernode(t, t.TempDir())
	out := t.TempDir()
	for i := range 2 {
		p := newDfgetPeer(t, "127.0.0."+strconv.Itoa(20+i))
		dst := filepath.Join(out, strconv.Itoa(i))
		r := p.run(sn, "-u", url, "-o", dst, "--notbs", "--md5", strings.ToUpper(md5hex(data)))
		t.Logf("client %d: exit %d: %s", i, r.code, lastLine(r.stdout))
		if r.code != 0 {
			t.Fatalf("upper-case --md5: exit %d\n%s", r.code, r.stdout)
		}
		fileEquals(t, dst, data)
	}
	if n := o.count("/upper.bin", 200); n != 1 {
		t.Fatalf("origin sent the file %d times, want 1 (the CDN)", n)
	}
}
