package piece

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestComputeSize(t *testing.T) {
	for _, tc := range []struct {
		length int64
		want   int32
	}{
		{-1, 4 * mib}, {0, 4 * mib}, {1, 4 * mib}, {200 * mib, 4 * mib}, {250 * mib, 4 * mib},
		{300 * mib, 5 * mib}, {1000 * mib, 12 * mib}, {1300 * mib, 15 * mib}, {1 << 40, 15 * mib},
	} {
		if got := ComputeSize(tc.length); got != tc.want {
			t.Errorf("ComputeSize(%d) = %d, want %d", tc.length, got, tc.want)
		}
	}
}

func TestCountAndLengths(t *testing.T) {
	ps := int32(DefaultSize)
	c := ContentSize(ps)
	for _, tc := range []struct {
		length  int64
		count   int
		wrapped int64
	}{
		{-1, 0, -1}, {0, 1, 5}, {1, 1, 6}, {c, 1, c + 5}, {c + 1, 2, c + 11}, {3 * c, 3, 3*c + 15},
	} {
		if got := Count(tc.length, ps); got != tc.count {
			t.Errorf("Count(%d) = %d, want %d", tc.length, got, tc.count)
		}
		if got := WrappedLength(tc.length, ps); got != tc.wrapped {
			t.Errorf("WrappedLength(%d) = %d, want %d", tc.length, got, tc.wrapped)
		}
		if got := UnwrappedLength(tc.wrapped, ps); got != tc.length {
			t.Errorf("UnwrappedLength(%d) = %d, want %d", tc.wrapped, got, tc.length)
		}
	}
	if got := ContentLength(1, c+7, ps); got != 7 {
		t.Errorf("ContentLength of short last piece = %d, want 7", got)
	}
	if got := ContentLength(2, c+7, ps); got != 0 {
		t.Errorf("ContentLength past end = %d, want 0", got)
	}
}

func TestWrapUnwrap(t *testing.T) {
	content := []byte("hello damselfly")
	w := Wrap(nil, content, DefaultSize)
	if len(w) != len(content)+WrapSize || w[len(w)-1] != TailChar {
		t.Fatalf("bad wrapped piece % x", w)
	}
	got, err := Unwrap(w)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}
	empty := Wrap(nil, nil, DefaultSize)
	if got, err := Unwrap(empty); err != nil || len(got) != 0 || len(empty) != 5 {
		t.Fatalf("empty piece: %q %v len %d", got, err, len(empty))
	}
	for name, bad := range map[string][]byte{
		"short":     w[:3],
		"truncated": w[:len(w)-2],
		"bad tail":  append(append([]byte{}, w[:len(w)-1]...), 0x00),
	} {
		if _, err := Unwrap(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestHeaderMatchesV1(t *testing.T) {
	// 4 MiB piece, 4,194,299 content bytes: header 0x043ffffb in v1.
	w := Wrap(nil, make([]byte, DefaultSize-WrapSize), DefaultSize)
	if !bytes.Equal(w[:4], []byte{0x04, 0x3f, 0xff, 0xfb}) {
		t.Fatalf("header % x, want 04 3f ff fb", w[:4])
	}
}

// The in-place and streaming forms build the same bytes as Wrap, so the
// CDN's disk, the peer server's answers and the tests agree on the format.
func TestWrapInPlaceAndWriteWrappedMatchWrap(t *testing.T) {
	for _, content := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("piece"), 1000)} {
		want := Wrap(nil, content, DefaultSize)

		buf := make([]byte, len(content)+WrapSize+7) // room to spare, as a pool buffer has
		copy(buf[HeadSize:], content)
		if got := WrapInPlace(buf, len(content), DefaultSize); !bytes.Equal(got, want) {
			t.Errorf("WrapInPlace of %d bytes = % x, want % x", len(content), got, want)
		}

		var out bytes.Buffer
		err := WriteWrapped(&out, int64(len(content)), DefaultSize, func(w io.Writer) error {
			_, err := w.Write(content)
			return err
		})
		if err != nil || !bytes.Equal(out.Bytes(), want) {
			t.Errorf("WriteWrapped of %d bytes = % x, %v, want % x", len(content), out.Bytes(), err, want)
		}
		if got, err := Unwrap(out.Bytes()); err != nil || !bytes.Equal(got, content) {
			t.Errorf("Unwrap(WriteWrapped) = %q, %v", got, err)
		}
	}
}

// A content or writer failure stops WriteWrapped before the tail: a
// receiver must never see a complete-looking piece around missing bytes.
func TestWriteWrappedStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	var out bytes.Buffer
	err := WriteWrapped(&out, 3, DefaultSize, func(io.Writer) error { return boom })
	if !errors.Is(err, boom) || out.Len() != HeadSize {
		t.Errorf("content error: %v, %d bytes written, want boom after the header only", err, out.Len())
	}
	called := false
	err = WriteWrapped(failWriter{boom}, 3, DefaultSize, func(io.Writer) error { called = true; return nil })
	if !errors.Is(err, boom) || called {
		t.Errorf("header write error: %v, content called %v", err, called)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestRanges(t *testing.T) {
	ps := int32(100)
	if got := Range(0, ps, -1); got != "0-99" {
		t.Errorf("Range(0) = %s", got)
	}
	if got := Range(2, ps, 250); got != "200-249" {
		t.Errorf("clipped Range(2) = %s", got)
	}
	for _, tc := range []struct {
		r    string
		num  int
		fail bool
	}{
		{"0-99", 0, false}, {"200-249", 2, false}, {"100-199", 1, false},
		{"150-199", 0, true}, {"x-1", 0, true}, {"5-4", 0, true}, {"7", 0, true}, {"-1-5", 0, true},
	} {
		n, err := NumFromRange(tc.r, ps)
		if (err != nil) != tc.fail || (!tc.fail && n != tc.num) {
			t.Errorf("NumFromRange(%q) = %d, %v", tc.r, n, err)
		}
	}
	if v := Md5Value([]byte("x")); v != Md5Hex([]byte("x"))+":1" {
		t.Errorf("Md5Value = %s", v)
	}
}

func FuzzUnwrap(f *testing.F) {
	f.Add(Wrap(nil, []byte("abc"), DefaultSize))
	f.Add([]byte{0, 0, 0, 0, 0x7f})
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Unwrap(b)
		if err == nil && (len(c) != len(b)-WrapSize || b[len(b)-1] != TailChar) {
			t.Fatalf("accepted inconsistent piece % x", b)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	f.Add("0-99")
	f.Add("10-")
	f.Fuzz(func(t *testing.T, s string) {
		a, b, err := ParseRange(s)
		if err == nil && (a < 0 || b < a) {
			t.Fatalf("ParseRange(%q) = %d,%d", s, a, b)
		}
	})
}
