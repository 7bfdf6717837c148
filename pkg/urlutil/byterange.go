package urlutil

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ByteRange is one parsed "Range: bytes=..." value: First-Last, First- (Last
// -1, to the end of the file), or the suffix form -Suffix (Suffix > 0, the
// last Suffix bytes; First and Last unused).
type ByteRange struct {
	First, Last, Suffix int64
}

// ErrSeveralRanges is wrapped by ParseByteRange's error for a bytes Range
// naming several ranges, which callers refuse with their own explanation
// (the answer would be a multipart/byteranges body, not the bytes).
var ErrSeveralRanges = errors.New("several ranges")

// ParseByteRange parses a Range header naming one range of bytes. Several
// ranges (an error wrapping ErrSeveralRanges), another unit, or an end before
// the start are errors. Space is allowed around the value and around "="
// only: the bounds are plain digits (RFC 9110's 1*DIGIT, no sign, no space
// around "-"), so a value accepted here is one an origin parses as the
// same range rather than ignores, which would make it answer the whole file.
func ParseByteRange(v string) (ByteRange, error) {
	bad := func() (ByteRange, error) {
		return ByteRange{}, fmt.Errorf("invalid Range %q: want bytes=a-b, bytes=a- or bytes=-n", v)
	}
	// The piece server parses every piece request's Range, spelled this
	// way by every client: the prefix is taken without trimming or folding.
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok {
		var unit string
		unit, spec, ok = strings.Cut(strings.TrimSpace(v), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
			return bad()
		}
	}
	if strings.Contains(spec, ",") {
		return ByteRange{}, fmt.Errorf("invalid Range %q: %w", v, ErrSeveralRanges)
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return bad()
	}
	if a == "" {
		n, ok := rangeBound(b)
		if !ok || n == 0 {
			return bad()
		}
		return ByteRange{Suffix: n}, nil
	}
	first, ok := rangeBound(a)
	if !ok {
		return bad()
	}
	if b == "" {
		return ByteRange{First: first, Last: -1}, nil
	}
	last, ok := rangeBound(b)
	if !ok || last < first {
		return bad()
	}
	return ByteRange{First: first, Last: last}, nil
}

// rangeBound parses a bound of a byte range: ASCII digits only, so no sign
// (strconv would take "+5" and "-0") and no space, within int64.
func rangeBound(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// InWhole places br in a body of size bytes that is the whole file (-1 when
// unknown), the 200 of an origin that ignores Range: the offset of the
// range's first byte and its length (-1: up to the body's end). As an
// origin honouring Range would, it cuts a range past the end at the end. A
// suffix range needs the size, which a body without Content-Length tells
// only once it was read whole.
func (br ByteRange) InWhole(size int64) (first, length int64, err error) {
	switch {
	case br.Suffix > 0 && size < 0:
		return 0, 0, errors.New("answered 200 without Content-Length to a suffix Range: " +
			"where its last bytes start is known only at the body's end")
	case br.Suffix > 0 && size == 0:
		return 0, 0, errors.New("answered 200 with an empty file to a suffix Range")
	case br.Suffix > 0:
		first = max(size-br.Suffix, 0)
		return first, size - first, nil
	case size >= 0 && br.First >= size:
		return 0, 0, fmt.Errorf("answered 200 with a file of %d bytes to a Range from byte %d", size, br.First)
	case br.Last < 0 && size < 0:
		return br.First, -1, nil
	case br.Last < 0:
		return br.First, size - br.First, nil
	case size < 0:
		return br.First, br.Last - br.First + 1, nil
	}
	return br.First, min(br.Last, size-1) - br.First + 1, nil
}
