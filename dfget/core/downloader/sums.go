package downloader

import (
	"crypto/md5"
	"encoding/hex"
	"hash"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

// wholeSums are the whole-file digests a download checks itself: md5
// (--md5, or the 600's md5 when a piece came without a digest of its own)
// and sha256 (--digest). Each is computed only when wanted, and all of them
// in the same pass over the bytes.
type wholeSums struct {
	md5, sha256 hash.Hash
}

// newWholeSums returns the sums wanted.
func newWholeSums(md5Sum, sha256Sum bool) wholeSums {
	var s wholeSums
	if md5Sum {
		s.md5 = md5.New()
	}
	if sha256Sum {
		s.sha256 = digest.SHA256.New()
	}
	return s
}

// active reports whether any digest is computed.
func (s *wholeSums) active() bool { return s.md5 != nil || s.sha256 != nil }

// Write feeds the next bytes of the file.
func (s *wholeSums) Write(b []byte) (int, error) {
	if s.md5 != nil {
		s.md5.Write(b)
	}
	if s.sha256 != nil {
		s.sha256.Write(b)
	}
	return len(b), nil
}

// md5Hex is the md5 so far ("" when not computed).
func (s *wholeSums) md5Hex() string {
	if s.md5 == nil {
		return ""
	}
	return hex.EncodeToString(s.md5.Sum(nil))
}

// sha is the sha256 so far (zero when not computed, which matches no
// expected digest).
func (s *wholeSums) sha() digest.Digest {
	if s.sha256 == nil {
		return digest.Digest{}
	}
	return digest.FromHash(digest.SHA256, s.sha256)
}
