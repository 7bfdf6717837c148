package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

const verifySize = 1 << 20

// wrappedPiece is a wrapped piece and the same-length piece with one
// content byte flipped: what a lying holder serves.
func wrappedPiece() (good, bad []byte) {
	good = piece.Wrap(nil, []byte(strings.Repeat("v", 4000)), verifySize)
	bad = append([]byte(nil), good...)
	bad[200] ^= 1
	return good, bad
}

// fetchFrom fetches a wrapped piece with the given digest fields from a
// holder serving body; it returns the error and how often the holder was
// asked.
func fetchFrom(t *testing.T, body []byte, pieceMd5, pieceDigest string) ([]byte, error, int32) {
	t.Helper()
	var hits atomic.Int32
	ip, port := holder(t, func(*http.Request) (int, []byte) { hits.Add(1); return http.StatusPartialContent, body })
	info := types.PieceInfo{Range: "0-" + strconv.Itoa(len(body)-1), PieceSize: verifySize, PieceMd5: pieceMd5,
		PieceDigest: pieceDigest, PeerIP: ip, PeerPort: port, Path: "/peer/file/x", CID: "peer-1"}
	b, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Wrapped: true}, new([]byte))
	return b, err, hits.Load()
}

func blake3Of(b []byte) string { return digest.Sum(digest.BLAKE3, b).String() }

// With a BLAKE3 digest the piece is checked against it, and only it:
// pieceMd5 is neither computed nor compared, so a wrong pieceMd5 beside a
// right BLAKE3 passes and a right pieceMd5 beside a wrong BLAKE3 fails.
func TestFetchPieceBlake3(t *testing.T) {
	good, bad := wrappedPiece()
	wrongMd5 := piece.Md5Value(bad)
	for _, tc := range []struct {
		name          string
		body          []byte
		md5, blake3   string
		ok            bool
		wantMismatchB bool
	}{
		{"right bytes", good, piece.Md5Value(good), blake3Of(good), true, false},
		{"liar, right length, wrong bytes", bad, piece.Md5Value(good), blake3Of(good), false, true},
		{"wrong pieceMd5, right blake3", good, wrongMd5, blake3Of(good), true, false},
		{"right pieceMd5, wrong blake3", good, piece.Md5Value(good), blake3Of(bad), false, true},
		{"blake3 only, no pieceMd5", good, "", blake3Of(good), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err, _ := fetchFrom(t, tc.body, tc.md5, tc.blake3)
			var mm *Md5MismatchError
			switch {
			case tc.ok && (err != nil || string(b) != string(good)):
				t.Fatalf("refused: %v", err)
			case !tc.ok && !errors.As(err, &mm):
				t.Fatalf("err %v, want an *Md5MismatchError", err)
			case !tc.ok && (!strings.HasPrefix(mm.Real, "blake3:") || mm.Expected != tc.blake3):
				t.Fatalf("mismatch real %q expected %q, want blake3 digests (%s)", mm.Real, mm.Expected, tc.blake3)
			}
			t.Logf("err: %v", err)
		})
	}
}

// The verifier hashes with the one algorithm the piece info names: BLAKE3
// when there is a pieceDigest, md5 only without one.
func TestVerifierAlgorithm(t *testing.T) {
	good, _ := wrappedPiece()
	for _, tc := range []struct {
		info types.PieceInfo
		alg  digest.Algorithm
		size int
	}{
		{types.PieceInfo{PieceMd5: piece.Md5Value(good), PieceDigest: blake3Of(good)}, digest.BLAKE3, 32},
		{types.PieceInfo{PieceMd5: piece.Md5Value(good)}, digest.MD5, 16},
	} {
		v, err := newVerifier(tc.info)
		if err != nil {
			t.Fatal(err)
		}
		if v.want.Algorithm() != tc.alg || v.h.Size() != tc.size {
			t.Errorf("%+v: verifies %v with a %d-byte hash, want %v", tc.info, v.want.Algorithm(), v.h.Size(), tc.alg)
		}
	}
}

// A pieceDigest that does not parse fails the piece as a reported
// mismatch, before the holder is asked; it is never "no check", and never
// a fallback to pieceMd5, even when pieceMd5 and the bytes are right.
func TestFetchPieceMalformedDigest(t *testing.T) {
	good, _ := wrappedPiece()
	hex := digest.Sum(digest.BLAKE3, good).Hex()
	for _, d := range []string{
		"blake3:" + hex[:63] + "z", // bad hex
		"blake3:" + hex[:62],       // short
		"blake3:" + hex + "00",     // long
		"blake3:",                  // empty sum
		"sha1:" + hex[:40],         // unknown algorithm
		hex,                        // no prefix
		"blake3",                   // no sum
	} {
		t.Run(d, func(t *testing.T) {
			_, err, hits := fetchFrom(t, good, piece.Md5Value(good), d)
			var mm *Md5MismatchError
			if !errors.As(err, &mm) || !errors.Is(err, digest.ErrMalformed) {
				t.Fatalf("err %v, want a reported mismatch wrapping digest.ErrMalformed", err)
			}
			if hits != 0 {
				t.Errorf("holder asked %d times for a piece that cannot be verified", hits)
			}
			t.Logf("err: %v", err)
		})
	}
}

// Without a pieceDigest (a Dragonfly 1.x supernode) pieces are checked
// against pieceMd5 as before; a malformed pieceMd5 is an error too.
func TestFetchPieceMd5Fallback(t *testing.T) {
	good, bad := wrappedPiece()
	if _, err, _ := fetchFrom(t, good, piece.Md5Value(good), ""); err != nil {
		t.Fatalf("right bytes refused: %v", err)
	}
	_, err, _ := fetchFrom(t, bad, piece.Md5Value(good), "")
	var mm *Md5MismatchError
	if !errors.As(err, &mm) || strings.Contains(mm.Real, ":") || mm.Expected != piece.Md5Hex(good) {
		t.Fatalf("liar: err %v, want an md5 mismatch", err)
	}
	for _, m := range []string{"nothex:" + strconv.Itoa(len(good)), piece.Md5Hex(good), piece.Md5Value(good)[:10]} {
		if _, err, _ := fetchFrom(t, good, m, ""); !errors.As(err, &mm) || !errors.Is(err, digest.ErrMalformed) {
			t.Errorf("pieceMd5 %q: err %v, want a reported malformed digest", m, err)
		}
	}
}
