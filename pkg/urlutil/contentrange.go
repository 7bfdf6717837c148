package urlutil

import (
	"fmt"
	"strconv"
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
	cr := ContentRange{Total: -1}
	var err1, err2, err3 error
	cr.First, err1 = strconv.ParseInt(first, 10, 64)
	cr.Last, err2 = strconv.ParseInt(last, 10, 64)
	if total != "*" {
		cr.Total, err3 = strconv.ParseInt(total, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || cr.First < 0 || cr.Last < cr.First || (cr.Total >= 0 && cr.Last >= cr.Total) {
		return bad()
	}
	return cr, nil
}
