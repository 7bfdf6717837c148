package cdn

import (
	"fmt"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

// fileSums are the whole-file digests one fetch computes: md5 only when
// the task expects one (--md5), sha256 only when it carries an expected
// digest. A fetch that needs neither hashes nothing but its pieces' BLAKE3:
// the whole-file md5 of a v1 client's 600 is computed later, on demand
// (lazymd5.go), because most fetches never need it and md5 is the slowest
// hash on the data path.
type fileSums struct{ digest.Whole }

func newFileSums(src Source) *fileSums {
	return &fileSums{digest.NewWhole(src.Md5 != "", !src.Digest.IsZero())}
}

// check compares the content with what src expects: the md5 (hex compared
// case-insensitively, so an upper-case --md5 is the same digest) and the
// sha256. A mismatch fails the fetch: the file is not kept as good.
func (s *fileSums) check(src Source) error {
	if real := s.Md5Hex(); src.Md5 != "" && !strings.EqualFold(src.Md5, real) {
		return fmt.Errorf("source %s md5 is %s, want %s", src.RawURL, real, src.Md5)
	}
	if !src.Digest.IsZero() {
		if err := src.Digest.Check(s.Sha256()); err != nil {
			return fmt.Errorf("source %s: %w", src.RawURL, err)
		}
	}
	return nil
}

// contentKey identifies a file's content by its pieces' BLAKE3 digests:
// the BLAKE3 of their wire forms, one a line. It costs nothing beyond the
// piece digests and binds the sidecars to the content they describe.
func contentKey(pieces []digest.Digest) string {
	var sb strings.Builder
	for _, d := range pieces {
		sb.WriteString(d.String())
		sb.WriteByte('\n')
	}
	return digest.Sum(digest.BLAKE3, []byte(sb.String())).String()
}
