package urlutil

import (
	"errors"
	"testing"
)

func TestParseByteRange(t *testing.T) {
	good := map[string]ByteRange{
		"bytes=1000-5000999":          {First: 1000, Last: 5000999},
		" Bytes = 0-0 ":               {First: 0, Last: 0},
		"bytes= 5-9":                  {First: 5, Last: 9},
		"bytes=7-":                    {First: 7, Last: -1},
		"bytes=-10":                   {Suffix: 10},
		"bytes=007-008":               {First: 7, Last: 8},
		"bytes=9223372036854775807-":  {First: 1<<63 - 1, Last: -1},
		"bytes=-9223372036854775807":  {Suffix: 1<<63 - 1},
		"bytes=0-9223372036854775807": {First: 0, Last: 1<<63 - 1},
		"bytes=9223372036854775807-9223372036854775807": {First: 1<<63 - 1, Last: 1<<63 - 1},
	}
	for v, want := range good {
		got, err := ParseByteRange(v)
		if err != nil || got != want {
			t.Errorf("ParseByteRange(%q) = %+v, %v; want %+v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "bytes", "bytes=", "bytes=-", "bytes=-0", "bytes=-00", "bytes=5-3", "items=0-1",
		"bytes=a-1", "bytes=+1-2", "bytes=-1-2", "bytes=1-+2", "bytes=-+5", "bytes=99999999999999999999-",
		"bytes=9223372036854775808-", "bytes=-9223372036854775808", "bytes=0-9223372036854775808",
		"bytes=0--0", "bytes=--0", "bytes=--5", "bytes=5 - 9", "bytes=5 -9", "bytes=5- 9", "bytes=-\t5",
		"bytes=0x10-", "bytes=1_0-", "bytes=５-9", "bytes 0-9", "items=0-1,2-3"} {
		if got, err := ParseByteRange(v); err == nil || errors.Is(err, ErrSeveralRanges) {
			t.Errorf("ParseByteRange(%q) = %+v, %v; want an error, not several ranges", v, got, err)
		}
	}
	for _, v := range []string{"bytes=0-1,3-4", "bytes=0-1, 3-4", "bytes=0-1,", "bytes=,0-1", "Bytes=0-1,bytes=3-4"} {
		if got, err := ParseByteRange(v); !errors.Is(err, ErrSeveralRanges) {
			t.Errorf("ParseByteRange(%q) = %+v, %v; want ErrSeveralRanges", v, got, err)
		}
	}
}

// The piece server parses the Range of every piece request: a good range
// costs no allocation.
func TestParseByteRangeDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseByteRange("bytes=4194304-8388607") }); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}

func FuzzParseByteRange(f *testing.F) {
	for _, v := range []string{"bytes=0-9", "bytes=5-", "bytes=-5", "bytes=0-1,4-5", "bytes=+5-9", "bytes=0--0"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		br, err := ParseByteRange(v)
		if err != nil {
			return
		}
		if br.Suffix < 0 || (br.Suffix > 0 && (br.First != 0 || br.Last != 0)) ||
			(br.Suffix == 0 && (br.First < 0 || (br.Last != -1 && br.Last < br.First))) {
			t.Fatalf("%q -> %+v", v, br)
		}
	})
}

// InWhole places a range in a whole-file body as an origin honouring Range
// would answer it: cut at the end, a suffix by the size; what it cannot
// place (a suffix of unknown or empty size, a start at or past the end)
// is an error.
func TestInWhole(t *testing.T) {
	for _, tc := range []struct {
		br                  ByteRange
		size, first, length int64
		ok                  bool
	}{
		{ByteRange{First: 20, Last: 29}, 100, 20, 10, true},
		{ByteRange{First: 20, Last: 29}, -1, 20, 10, true},
		{ByteRange{First: 95, Last: 199}, 100, 95, 5, true},
		{ByteRange{First: 90, Last: -1}, 100, 90, 10, true},
		{ByteRange{First: 90, Last: -1}, -1, 90, -1, true},
		{ByteRange{Suffix: 5}, 100, 95, 5, true},
		{ByteRange{Suffix: 500}, 100, 0, 100, true},
		{ByteRange{First: 100, Last: -1}, 100, 0, 0, false},
		{ByteRange{First: 100, Last: 120}, 100, 0, 0, false},
		{ByteRange{Suffix: 5}, -1, 0, 0, false},
		{ByteRange{Suffix: 5}, 0, 0, 0, false},
	} {
		first, length, err := tc.br.InWhole(tc.size)
		if (err == nil) != tc.ok || tc.ok && (first != tc.first || length != tc.length) {
			t.Errorf("%+v in %d: %d, %d, %v; want %d, %d, ok %v", tc.br, tc.size, first, length, err, tc.first, tc.length, tc.ok)
		}
	}
}
