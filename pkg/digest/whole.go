package digest

import (
	"crypto/md5"
	"encoding/hex"
	"hash"
)

// Whole is the whole-file digests one party checks: md5 and sha256, each
// computed only when asked for, all fed in one pass over the bytes. The
// zero Whole computes nothing.
type Whole struct {
	md5, sha256 hash.Hash
}

// NewWhole returns the digests asked for.
func NewWhole(md5Sum, sha256Sum bool) Whole {
	var w Whole
	if md5Sum {
		w.md5 = md5.New()
	}
	if sha256Sum {
		w.sha256 = SHA256.New()
	}
	return w
}

// Active reports whether any digest is computed.
func (w *Whole) Active() bool { return w.md5 != nil || w.sha256 != nil }

// HasMd5 reports whether the md5 is computed.
func (w *Whole) HasMd5() bool { return w.md5 != nil }

// HasSha256 reports whether the sha256 is computed.
func (w *Whole) HasSha256() bool { return w.sha256 != nil }

// Write feeds the next bytes of the file to every digest computed.
func (w *Whole) Write(b []byte) (int, error) {
	if w.md5 != nil {
		w.md5.Write(b)
	}
	if w.sha256 != nil {
		w.sha256.Write(b)
	}
	return len(b), nil
}

// Md5Hex is the md5 so far in lower-case hex, v1's form ("" when not
// computed).
func (w *Whole) Md5Hex() string {
	if w.md5 == nil {
		return ""
	}
	return hex.EncodeToString(w.md5.Sum(nil))
}

// Sha256 is the sha256 so far (the zero Digest when not computed, which
// matches no expected digest).
func (w *Whole) Sha256() Digest {
	if w.sha256 == nil {
		return Digest{}
	}
	return FromHash(SHA256, w.sha256)
}
