package digest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"lukechampine.com/blake3"
)

// Known answers: md5 from RFC 1321's test suite; BLAKE3 from the reference
// implementation's published vectors (input i%251 for i in [0, len)).
func TestKnownVectors(t *testing.T) {
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i % 251)
		}
		return b
	}
	cases := []struct {
		alg  Algorithm
		in   []byte
		want string
	}{
		{MD5, nil, "d41d8cd98f00b204e9800998ecf8427e"},
		{MD5, []byte("abc"), "900150983cd24fb0d6963f7d28e17f72"},
		{MD5, []byte("12345678901234567890123456789012345678901234567890123456789012345678901234567890"), "57edf4a22be3c955ac49da2e2107b67a"},
		{SHA256, nil, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{SHA256, []byte("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{BLAKE3, seq(0), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
		{BLAKE3, seq(1), "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"},
		{BLAKE3, seq(1023), "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"},
		{BLAKE3, seq(1024), "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"},
		{BLAKE3, seq(1025), "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"},
	}
	for _, c := range cases {
		if got := Sum(c.alg, c.in).Hex(); got != c.want {
			t.Errorf("%s of %d bytes = %s, want %s", c.alg, len(c.in), got, c.want)
		}
		want, err := ParseHex(c.alg, strings.ToUpper(c.want))
		if err != nil {
			t.Fatal(err)
		}
		if err := want.Verify(c.in); err != nil {
			t.Errorf("Verify of upper-case %s: %v", c.alg, err)
		}
	}
}

func TestStreamingEqualsOneShot(t *testing.T) {
	data := make([]byte, 5<<20+7)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	for _, a := range []Algorithm{MD5, BLAKE3, SHA256} {
		h := a.New()
		for off := 0; off < len(data); {
			n := min(len(data)-off, 1+off%(300<<10))
			h.Write(data[off : off+n])
			off += n
		}
		if got, want := FromHash(a, h), Sum(a, data); got != want {
			t.Errorf("%s: streaming %s != one-shot %s", a, got, want)
		}
	}
}

func TestVerifyMismatchAndZero(t *testing.T) {
	want := Sum(BLAKE3, []byte("right"))
	err := want.Verify([]byte("wrong"))
	var mm *MismatchError
	if !errors.As(err, &mm) || mm.Want != want {
		t.Fatalf("Verify of wrong bytes = %v, want a MismatchError", err)
	}
	if err := (Digest{}).Verify([]byte("x")); !errors.Is(err, ErrNoDigest) {
		t.Fatalf("zero Digest Verify = %v, want ErrNoDigest", err)
	}
	// A digest of another algorithm over the same bytes is a mismatch too.
	if err := want.Check(Sum(MD5, []byte("right"))); err == nil {
		t.Fatal("md5 digest accepted for a BLAKE3 expectation")
	}
}

func TestParseIsStrict(t *testing.T) {
	good := Sum(BLAKE3, []byte("x"))
	if d, err := Parse(good.String()); err != nil || d != good {
		t.Fatalf("Parse(%q) = %v, %v", good.String(), d, err)
	}
	if d, err := Parse("BLAKE3:" + strings.ToUpper(good.Hex())); err != nil || d != good {
		t.Fatalf("upper case: %v, %v", d, err)
	}
	bad := []string{
		"",
		good.Hex(),                             // no algorithm
		"sha1:" + good.Hex()[:40],              // unknown algorithm
		"blake3:" + good.Hex()[:62],            // short
		"blake3:" + good.Hex() + "00",          // long
		"blake3:" + good.Hex()[:63] + "g",      // not hex
		"md5:" + good.Hex(),                    // blake3 length under md5
		"sha256:" + good.Hex()[:32],            // md5 length under sha256
		"sha-256:" + good.Hex(),                // not the wire name
		"blake3:" + strings.Repeat("a", 1<<20), // huge input is clipped in the error
	}
	for _, s := range bad {
		_, err := Parse(s)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%.40q) = %v, want ErrMalformed", s, err)
		}
		if err != nil && len(err.Error()) > 300 {
			t.Errorf("error echoes %d bytes of input", len(err.Error()))
		}
	}
}

func TestPieceMd5(t *testing.T) {
	wrapped := []byte("\x00\x00\x00\x03abc\x7f")
	// The field as the CDN writes it (pkg/piece.Md5Value).
	v := Sum(MD5, wrapped).Hex() + ":" + strconv.Itoa(len(wrapped))
	d, n, err := ParsePieceMd5(v)
	if err != nil || n != int64(len(wrapped)) || d.Verify(wrapped) != nil {
		t.Fatalf("ParsePieceMd5(%q) = %v, %d, %v", v, d, n, err)
	}
	for _, s := range []string{"", ":", "abc:8", d.Hex(), d.Hex() + ":", d.Hex() + ":-1", d.Hex() + ":x"} {
		if _, _, err := ParsePieceMd5(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePieceMd5(%q) = %v, want ErrMalformed", s, err)
		}
	}
}

func BenchmarkSum(b *testing.B) {
	buf := bytes.Repeat([]byte{0x5a}, 4<<20)
	for _, a := range []Algorithm{MD5, BLAKE3, SHA256} {
		b.Run(a.String(), func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				Sum(a, buf)
			}
		})
	}
}

// Whole computes exactly the digests asked for, in one pass.
func TestWhole(t *testing.T) {
	data := bytes.Repeat([]byte("whole file "), 1000)
	for _, c := range []struct{ md5, sha bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		w := NewWhole(c.md5, c.sha)
		_, _ = w.Write(data[:100])
		_, _ = w.Write(data[100:])
		if w.Active() != (c.md5 || c.sha) || w.HasMd5() != c.md5 || w.HasSha256() != c.sha {
			t.Fatalf("%+v: active %v", c, w.Active())
		}
		if got, want := w.Md5Hex(), Sum(MD5, data).Hex(); (got == want) != c.md5 || (!c.md5 && got != "") {
			t.Errorf("%+v: md5 %q", c, got)
		}
		if got, want := w.Sha256(), Sum(SHA256, data); (got == want) != c.sha || (!c.sha && !got.IsZero()) {
			t.Errorf("%+v: sha256 %v", c, got)
		}
	}
}

// The sequential BLAKE3 equals the library's for every length around the
// chunk, block and tree boundaries and for large inputs, written whole or
// in random splits.
func TestBlake3MatchesLibrary(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	var sizes []int
	for _, base := range []int{0, 64, 1024, 2048, 16 << 10, 32 << 10, 17 << 10, 1 << 20, 3 << 20} {
		for d := -2; d <= 2; d++ {
			if base+d >= 0 {
				sizes = append(sizes, base+d)
			}
		}
	}
	sizes = append(sizes, len(data))
	for range 40 {
		sizes = append(sizes, r.IntN(len(data)))
	}
	for _, n := range sizes {
		want := blake3.Sum256(data[:n])
		if got := Sum(BLAKE3, data[:n]); got.Hex() != hex.EncodeToString(want[:]) {
			t.Fatalf("%d bytes: %s, want %x", n, got.Hex(), want)
		}
		h := BLAKE3.New()
		for off := 0; off < n; {
			k := min(n-off, r.IntN(40<<10))
			h.Write(data[off : off+k])
			off += k
		}
		if got := FromHash(BLAKE3, h); got.Hex() != hex.EncodeToString(want[:]) {
			t.Fatalf("%d bytes in splits: %s, want %x", n, got.Hex(), want)
		}
	}
}
