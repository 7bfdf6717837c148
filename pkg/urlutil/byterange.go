package urlutil

import (
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

// ParseByteRange parses a Range header naming one range of bytes. Several
// ranges, another unit, or an end before the start are errors.
func ParseByteRange(v string) (ByteRange, error) {
	bad := func() (ByteRange, error) {
		return ByteRange{}, fmt.Errorf("invalid Range %q: want bytes=a-b, bytes=a- or bytes=-n", v)
	}
	unit, spec, ok := strings.Cut(strings.TrimSpace(v), "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(spec, ",") {
		return bad()
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if !ok {
		return bad()
	}
	num := func(s string) (int64, bool) {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil && n >= 0 && !strings.HasPrefix(s, "+")
	}
	if a == "" {
		n, ok := num(b)
		if !ok || n == 0 {
			return bad()
		}
		return ByteRange{Suffix: n}, nil
	}
	first, ok := num(a)
	if !ok {
		return bad()
	}
	if b == "" {
		return ByteRange{First: first, Last: -1}, nil
	}
	last, ok := num(b)
	if !ok || last < first {
		return bad()
	}
	return ByteRange{First: first, Last: last}, nil
}
