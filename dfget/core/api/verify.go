package api

import (
	"errors"
	"fmt"
	"hash"
	"math"
	"net/http"
	"strings"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// This file is where a received piece is verified: which holders a piece
// may come from at all (target), which digest it must match (newVerifier),
// whether the answer is the range asked for (checkReply), and whether the
// bytes that came are the piece (check). FetchPiece calls all four;
// nothing else accepts a piece.

// Md5MismatchError is a piece whose bytes do not match its expected digest.
// It keeps Dragonfly 1.x's name because it is reported as the v1 piece
// error FILE_MD5_NOT_MATCH, whichever algorithm the digest is in: Real and
// Expected are then the digest strings ("blake3:<hex>" for BLAKE3).
type Md5MismatchError struct{ Real, Expected string }

func (e *Md5MismatchError) Error() string {
	return fmt.Sprintf("piece digest mismatch: got %s, want %s", e.Real, e.Expected)
}

// reported is how a digest goes in an Md5MismatchError: md5 as the bare
// hex Dragonfly 1.x reports, any other algorithm with its name.
func reported(d digest.Digest) string {
	if d.Algorithm() == digest.MD5 {
		return d.Hex()
	}
	return d.String()
}

// ErrNoDigest is a piece offered without a digest by a holder it cannot
// be taken from unchecked: its bytes could not be checked, so it is not
// taken.
var ErrNoDigest = errors.New("piece offered without a digest")

// hasDigest reports whether the supernode gave the piece any digest.
func hasDigest(info types.PieceInfo) bool { return info.PieceMd5 != "" || info.PieceDigest != "" }

// target is where the piece is really fetched. The download's own source
// URL when fromSource; else a piece with a digest may come from anyone:
// the digest checks it. One without is taken only from a party trusted as
// much as a digest would be: in source-CDN mode the source (fromSource; a
// peer, or a path a peer registered, could send anything), in CDN mode the
// supernode's cache, whose pieces the whole-file md5 covers, so not when
// nothing covers them (Uncovered: a stream). Never from a peer.
func (r *FetchRequest) target() (string, error) {
	switch {
	case r.fromSource():
		return r.SourceURL, nil
	case hasDigest(r.Info):
		return r.URL(), nil
	case r.Wrapped && !r.Uncovered && strings.HasPrefix(r.Info.CID, types.SuperNodeCIDPrefix):
		return r.URL(), nil
	}
	return "", fmt.Errorf("piece %d from %s (%s): %w", r.Info.PieceNum, r.Info.CID, r.Info.PeerIP, ErrNoDigest)
}

// fromSource reports whether the piece is fetched from the source, at the
// download's own URL: in source-CDN mode, a piece whose path is a full URL
// (Dragonfly 1.x's test for the source) or that has no digest. The path's
// URL is the task's, that of whichever client made the supernode read it:
// ours may differ from it in a query parameter --filter drops (same task,
// so the same bytes), and only ours carries our own valid signature or
// token, and matches our --header credentials. Only a piece from the
// source gets those headers and the re-based Range; a peer gets neither.
func (r *FetchRequest) fromSource() bool {
	return !r.Wrapped && r.SourceURL != "" && (!hasDigest(r.Info) || strings.Contains(r.Info.Path, "://"))
}

// wireRange is the range to ask the holder for piece bytes start-end.
// With a user Range header the file being downloaded is that range of the
// source, and the supernode's piece ranges are offsets in it: a request to
// the source re-bases them onto the Range's start (as Dragonfly 1.x does),
// else it would fetch, and the pieces' digests would vouch for, bytes of
// another part of the source. A peer holds the range itself and is asked
// for the piece's own range. A piece the re-based range cannot hold (past
// the Range's end, or a suffix Range, whose start is unknown here) is an
// error: it is never fetched from elsewhere in the source.
func (r *FetchRequest) wireRange(start, end int64) (int64, int64, error) {
	rg, ok := r.Headers["Range"]
	if !ok || !r.fromSource() {
		return start, end, nil
	}
	br, err := urlutil.ParseByteRange(rg)
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("fetch piece %d from the source: --header %w", r.Info.PieceNum, err)
	case br.Suffix > 0:
		return 0, 0, fmt.Errorf("fetch piece %d from the source: --header Range %q is a suffix range, whose start in the source is unknown: pieces cannot be re-based onto it",
			r.Info.PieceNum, rg)
	case start > math.MaxInt64-br.First || end > math.MaxInt64-br.First:
		return 0, 0, fmt.Errorf("fetch piece %d from the source: range %s past --header Range %q", r.Info.PieceNum, r.Info.Range, rg)
	}
	first, last := br.First+start, br.First+end
	if br.Last >= 0 && last > br.Last {
		return 0, 0, fmt.Errorf("fetch piece %d from the source: range %s ends past --header Range %q", r.Info.PieceNum, r.Info.Range, rg)
	}
	return first, last, nil
}

// verifier holds a piece's expected digest and hashes the piece as it
// arrives. It hashes with one algorithm only: BLAKE3 when the supernode
// gave a pieceDigest (md5 is then not computed at all: that is the point,
// it costs several times more), else md5 from pieceMd5. With neither it
// hashes nothing and checks no digest; target has already decided whether
// such a piece may be taken.
type verifier struct {
	want digest.Digest
	// size is the length pieceMd5 states, -1 when none binds.
	size int64
	h    hash.Hash
}

// newVerifier builds the expected digest of a piece once. A digest field
// that does not parse (malformed, wrong length, unknown algorithm) is an
// error, never "no check".
func newVerifier(info types.PieceInfo) (*verifier, error) {
	v := &verifier{size: -1}
	var err error
	switch {
	case info.PieceDigest != "":
		v.want, err = digest.Parse(info.PieceDigest)
	case info.PieceMd5 != "":
		v.want, v.size, err = digest.ParsePieceMd5(info.PieceMd5)
	default:
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	v.h = v.want.Algorithm().New()
	return v, nil
}

// Write feeds received bytes to the running hash.
func (v *verifier) Write(b []byte) (int, error) {
	if v.h != nil {
		v.h.Write(b)
	}
	return len(b), nil
}

// Check compares everything written so far, b, with the expected digest.
func (v *verifier) Check(b []byte) error {
	if v.h == nil {
		return nil
	}
	got := digest.FromHash(v.want.Algorithm(), v.h)
	if err := v.want.Check(got); err != nil {
		return &Md5MismatchError{Real: reported(got), Expected: reported(v.want)}
	}
	if v.size >= 0 && v.size != int64(len(b)) {
		return &Md5MismatchError{Real: fmt.Sprintf("%s: %d bytes, the digest says %d", reported(got), len(b), v.size), Expected: reported(v.want)}
	}
	return nil
}

// badDigest is a piece whose digest field does not parse: reported like a
// mismatch so the holder it was offered from is avoided.
func (r *FetchRequest) badDigest(err error) error {
	exp := r.Info.PieceDigest
	if exp == "" {
		exp = r.Info.PieceMd5
	}
	return fmt.Errorf("piece %d from %s: %w: %w", r.Info.PieceNum, r.Info.CID,
		&Md5MismatchError{Real: "unverifiable", Expected: exp}, err)
}

// checkReply judges a piece answer before its body is read: it must be
// the requested range start-end. A 206 may state no Content-Range (the
// peer servers of Dragonfly 1.x and Damselfly send none); one that does
// must start at start and end at end, or before it only where the file
// ends (a server clips a last piece's range to the file). A 200 is the
// whole file from byte 0: it is taken only for a range that starts there,
// and FetchPiece then refuses a body longer than the range.
func (r *FetchRequest) checkReply(resp *http.Response, start, end int64, v *verifier) error {
	switch resp.StatusCode {
	case http.StatusOK:
		if start != 0 {
			return r.badReply(v, "HTTP 200 (the range ignored) for bytes %d-%d", start, end)
		}
		return nil
	case http.StatusPartialContent:
	default:
		return r.badReply(v, "HTTP %d for a range request", resp.StatusCode)
	}
	h := resp.Header.Get("Content-Range")
	if h == "" {
		return nil
	}
	cr, err := urlutil.ParseContentRange(h)
	switch {
	case err != nil:
		return r.badReply(v, "%v", err)
	case cr.First != start || cr.Last > end || (cr.Last < end && cr.Last != cr.Total-1):
		return r.badReply(v, "Content-Range %q for bytes %d-%d", h, start, end)
	case resp.ContentLength >= 0 && resp.ContentLength != cr.Last-cr.First+1:
		return r.badReply(v, "Content-Range %q with %d bytes", h, resp.ContentLength)
	}
	return nil
}

// ErrSourceReply is an answer from the source that is not the range asked
// for (a status, Content-Range or length that does not fit).
var ErrSourceReply = errors.New("the source's answer is not the range asked for")

// badReply is an answer that is not the requested piece. From a holder it
// is reported like a mismatch, so the holder is avoided. From the source
// it is a plain failure, retried or fallen back from: the source, or a
// proxy before it, misbehaved, not the task's digests, and in the source
// pattern a reported mismatch drops the task for every client.
func (r *FetchRequest) badReply(v *verifier, format string, a ...any) error {
	what := fmt.Sprintf(format, a...)
	if r.fromSource() {
		return fmt.Errorf("fetch piece %d from the source: %w: %s", r.Info.PieceNum, ErrSourceReply, what)
	}
	mm := &Md5MismatchError{Real: "wrong answer: " + what, Expected: reported(v.want)}
	return fmt.Errorf("fetch piece %d from %s: %w", r.Info.PieceNum, r.Info.PeerIP, mm)
}

// check judges a received piece: b, hashed into v, for a range of want
// bytes. A piece is the whole range or a failure, whatever the digest
// says; the one exception is a full-piece range of a file whose length was
// unknown when it was scheduled, which the holder clips at the end of the
// file and whose wrapper then states the shorter length. Failures are
// Md5MismatchErrors, so the holder is reported.
func (r *FetchRequest) check(b []byte, v *verifier, want int64) error {
	exp := reported(v.want)
	bad := func(real string) error { return &Md5MismatchError{Real: real, Expected: exp} }
	clipped := r.Wrapped && want == int64(r.Info.PieceSize)
	if int64(len(b)) != want && !clipped {
		return bad(fmt.Sprintf("short: %d of %d bytes", len(b), want))
	}
	if err := v.Check(b); err != nil {
		return err
	}
	if r.Wrapped {
		if _, err := piece.Unwrap(b); err != nil {
			return bad("malformed: " + err.Error())
		}
	}
	return nil
}

// VerifyHeld checks a piece this client already holds against the digest
// info gives for it: after a migration the new supernode offers pieces
// written from the old one's copy, which may be another version of the
// file. content is the piece's bytes of the file; the digest covers the
// bytes as served, wrapped unless source-CDN mode, so they are wrapped
// again (the wrapper is a function of the content and the piece size)
// before the same checks FetchPiece applies. A piece without a digest
// cannot be vouched for: ErrNoDigest.
func VerifyHeld(info types.PieceInfo, wrapped bool, content []byte) error {
	if !hasDigest(info) {
		return fmt.Errorf("held piece %d: %w", info.PieceNum, ErrNoDigest)
	}
	start, end, err := piece.ParseRange(info.Range)
	if err != nil {
		return err
	}
	r := &FetchRequest{Info: info, Wrapped: wrapped}
	v, err := newVerifier(info)
	if err != nil {
		return r.badDigest(err)
	}
	b := content
	if wrapped {
		b = piece.Wrap(make([]byte, 0, len(content)+piece.WrapSize), content, info.PieceSize)
	}
	_, _ = v.Write(b)
	return r.check(b, v, end-start+1)
}
