package e2e

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A user Range header gives exactly that range of the source in both CDN
// patterns, P2P only (--notbs): in files, from the supernode and then from
// a peer holding the range, and in a stream. In the source pattern the
// pieces are ranges of the range, which dfget re-bases onto its start when
// it fetches them from the source (as Dragonfly 1.x does), and the
// supernode's digests are of those bytes.
func TestDfgetRangeHeaderEveryPattern(t *testing.T) {
	o := newOrigin(t)
	data := randomData(11<<20+333, 31)
	url := o.add("/ranged.bin", data)
	ranges := map[string][]byte{
		fmt.Sprintf("bytes=1000-%d", 9<<20+4): data[1000 : 9<<20+5],
		fmt.Sprintf("bytes=%d-", 6<<20+1):     data[6<<20+1:],
	}
	for i, pattern := range []string{"local", "source"} {
		sn := startSupernode(t, t.TempDir(), "--cdn-pattern", pattern)
		out := t.TempDir()
		n := 0
		for rg, want := range ranges {
			hdr := "Range: " + rg
			for _, ip := range []string{"a", "b"} {
				n++
				p := newDfgetPeer(t, "127.0."+strconv.Itoa(i+1)+"."+strconv.Itoa(n))
				dst := filepath.Join(out, strconv.Itoa(n))
				r := p.run(sn, "-u", url, "-o", dst, "--header", hdr, "--notbs")
				t.Logf("%s %s peer %s: exit %d: %s", pattern, rg, ip, r.code, lastLine(r.stdout))
				if r.code != 0 || !strings.Contains(r.stdout, "length:"+strconv.Itoa(len(want))+" ") {
					t.Fatalf("%s pattern, %s: exit %d, want length %d: %s", pattern, rg, r.code, len(want), r.stdout)
				}
				fileEquals(t, dst, want)
			}
			n++
			p := newDfgetPeer(t, "127.0."+strconv.Itoa(i+1)+"."+strconv.Itoa(n))
			var got []byte
			r := p.stream(sn, func(r io.Reader) { got, _ = io.ReadAll(r) }, "-u", url, "--header", hdr, "--notbs")
			if r.code != 0 || string(got) != string(want) {
				t.Fatalf("%s pattern, %s, stream: exit %d, %d bytes, want the %d of the range: %s", pattern, rg, r.code,
					len(got), len(want), r.stderr)
			}
		}
	}
}

// A suffix Range (bytes=-n) cannot be served by the source pattern, whose
// clients re-base pieces onto the range's start: the supernode refuses the
// task, so with --notbs dfget fails without a file, and without it the
// source delivers the range.
func TestDfgetSuffixRangeSourcePattern(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5<<20+17, 32)
	url := o.add("/suffix.bin", data)
	sn := startSupernode(t, t.TempDir(), "--cdn-pattern", "source")
	out := t.TempDir()
	hdr := "Range: bytes=-3000000"
	p := newDfgetPeer(t, "127.0.0.2")
	dst := filepath.Join(out, "notbs")
	r := p.run(sn, "-u", url, "-o", dst, "--header", hdr, "--notbs")
	t.Logf("--notbs: exit %d: %s", r.code, lastLine(r.stdout))
	if r.code == 0 {
		t.Fatalf("a suffix range in the source pattern with --notbs: exit 0: %s", r.stdout)
	}
	noFile(t, dst)
	dst = filepath.Join(out, "bs")
	r = p.run(sn, "-u", url, "-o", dst, "--header", hdr)
	t.Logf("back-source: exit %d: %s", r.code, lastLine(r.stdout))
	if r.code != 0 {
		t.Fatalf("back-source: exit %d: %s", r.code, r.stdout)
	}
	fileEquals(t, dst, data[len(data)-3000000:])
}

// A source that ignores Range (here a chunked 200, without Content-Length)
// answers the supernode's request for a ranged task with the whole file:
// the CDN stores only the range, so dfget, P2P only, gets exactly those
// bytes, and dfget's own back-source (--pattern source) cuts it the same
// way. A suffix range cannot be placed in a body of unknown length: the
// task fails rather than giving the whole file.
func TestDfgetRangeHeaderRangeDeafSource(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5<<20+17, 41)
	url := o.add("/deaf.bin", data)
	o.mu.Lock()
	o.chunked["/deaf.bin"] = true
	o.mu.Unlock()
	sn := startSupernode(t, t.TempDir())
	out := t.TempDir()
	for i, tc := range []struct {
		rg   string
		want []byte // nil: the download fails
	}{
		{"bytes=100-199", data[100:200]},
		{fmt.Sprintf("bytes=%d-", 4<<20+3), data[4<<20+3:]},
		{"bytes=-50", nil},
	} {
		p := newDfgetPeer(t, "127.0.4."+strconv.Itoa(i+1))
		for _, mode := range []string{"--notbs", "--pattern=source"} {
			dst := filepath.Join(out, strconv.Itoa(i)+mode)
			r := p.run(sn, "-u", url, "-o", dst, "--header", "Range: "+tc.rg, mode)
			if tc.want == nil {
				if r.code == 0 {
					t.Fatalf("%s %s of a body of unknown length: exit 0, want a failure: %s", mode, tc.rg, lastLine(r.stdout))
				}
				noFile(t, dst)
				continue
			}
			if r.code != 0 || !strings.Contains(r.stdout, "length:"+strconv.Itoa(len(tc.want))+" ") {
				t.Fatalf("%s %s: exit %d, want length %d: %s", mode, tc.rg, r.code, len(tc.want), r.stdout)
			}
			fileEquals(t, dst, tc.want)
		}
	}
}
