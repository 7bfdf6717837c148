package api

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// This file is where a received piece is verified: which holders a piece
// may come from at all (target), and whether the bytes that came are the
// piece (check). FetchPiece calls both; nothing else accepts a piece.

// Md5MismatchError is a piece whose bytes do not hash to the expected md5.
type Md5MismatchError struct{ Real, Expected string }

func (e *Md5MismatchError) Error() string {
	return fmt.Sprintf("piece md5 mismatch: got %s, want %s", e.Real, e.Expected)
}

// ErrNoDigest is a piece offered by a peer without a digest: its bytes
// could not be checked, so it is not taken.
var ErrNoDigest = errors.New("piece offered by a peer without a digest")

// target is where the piece is really fetched. A piece with a digest may
// come from anyone: the digest checks it. One without is taken only from
// a party trusted as much as a digest would be: in source-CDN mode the
// download's own source URL (a peer, or a path a peer registered, could
// send anything), in CDN mode the supernode's cache, whose pieces the
// whole-file md5 covers. Never from a peer.
func (r *FetchRequest) target() (string, error) {
	switch {
	case r.Info.PieceMd5 != "":
		return r.URL(), nil
	case !r.Wrapped && r.SourceURL != "":
		return r.SourceURL, nil
	case r.Wrapped && strings.HasPrefix(r.Info.CID, types.SuperNodeCIDPrefix):
		return r.URL(), nil
	}
	return "", fmt.Errorf("piece %d from %s (%s): %w", r.Info.PieceNum, r.Info.CID, r.Info.PeerIP, ErrNoDigest)
}

// check judges a received piece: b, its md5 sum, for a range of want
// bytes. A piece is the whole range or a failure, whatever the digest
// says; the one exception is a full-piece range of a file whose length was
// unknown when it was scheduled, which the holder clips at the end of the
// file and whose wrapper then states the shorter length. Failures are
// Md5MismatchErrors, so the holder is reported.
func (r *FetchRequest) check(b []byte, sum string, want int64) error {
	exp := piece.Md5OfValue(r.Info.PieceMd5)
	bad := func(real string) error { return &Md5MismatchError{Real: real, Expected: exp} }
	clipped := r.Wrapped && want == int64(r.Info.PieceSize)
	if int64(len(b)) != want && !clipped {
		return bad(fmt.Sprintf("short: %d of %d bytes", len(b), want))
	}
	if exp != "" && !strings.EqualFold(sum, exp) {
		return bad(sum)
	}
	if n, ok := digestLength(r.Info.PieceMd5); ok && n != len(b) {
		return bad(fmt.Sprintf("%s: %d bytes, the digest says %d", sum, len(b), n))
	}
	if r.Wrapped {
		if _, err := piece.Unwrap(b); err != nil {
			return bad("malformed: " + err.Error())
		}
	}
	return nil
}

// digestLength is the length part of an "md5:len" piece digest.
func digestLength(v string) (int, bool) {
	_, l, ok := strings.Cut(v, ":")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(l)
	return n, err == nil
}
