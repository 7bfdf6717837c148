package digest

import (
	"fmt"
	"strconv"
	"strings"
)

// ParsePieceMd5 parses Dragonfly 1.x's pieceMd5 field, "<md5 hex>:<wrapped
// length>", as the md5 of the wrapped piece and that length. v1 receivers
// compare only the md5; the length is returned for callers that check it.
// The empty string is an error here: whether a piece without a digest may
// be accepted at all is the caller's policy, never this parser's.
func ParsePieceMd5(v string) (Digest, int64, error) {
	sum, length, ok := strings.Cut(v, ":")
	if !ok {
		return Digest{}, 0, fmt.Errorf("%w: pieceMd5 %q is not <md5>:<length>", ErrMalformed, clip(v))
	}
	d, err := ParseHex(MD5, sum)
	if err != nil {
		return Digest{}, 0, err
	}
	n, err := strconv.ParseInt(length, 10, 64)
	if err != nil || n < 0 {
		return Digest{}, 0, fmt.Errorf("%w: pieceMd5 length %q", ErrMalformed, clip(length))
	}
	return d, n, nil
}
