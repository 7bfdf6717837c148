package urlutil

import (
	"fmt"
	"strings"
)

// ContentRange is a parsed "Content-Range: bytes first-last/total" header
// of a 206 answer; Total is -1 when the server sent "*".
type ContentRange struct {
	First, Last, Total int64
}

// ParseContentRange parses the Content-Range of a single-part 206 answer.
// The unsatisfied form "bytes */total" and any other unit are errors: such
// an answer carries no range of bytes.
func ParseContentRange(v string) (ContentRange, error) {
	bad := func() (ContentRange, error) { return ContentRange{}, fmt.Errorf("invalid Content-Range %q", v) }
	unit, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad()
	}
	span, total, ok := strings.Cut(strings.TrimSpace(rest), "/")
	first, last, ok2 := strings.Cut(span, "-")
	if !ok || !ok2 {
		return bad()
	}
	// Digits only (rangeBound), as RFC 9110 14.4 has them: strconv alone
	// took "-2" for a total, read by callers as "unknown" (-1's meaning),
	// and "+0" for a bound.
	cr := ContentRange{Total: -1}
	var firstOK, lastOK bool
	cr.First, firstOK = rangeBound(first)
	cr.Last, lastOK = rangeBound(last)
	totalOK := total == "*"
	if !totalOK {
		cr.Total, totalOK = rangeBound(total)
	}
	if !firstOK || !lastOK || !totalOK || cr.Last < cr.First || (cr.Total >= 0 && cr.Last >= cr.Total) {
		return bad()
	}
	return cr, nil
}
