package downloader

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// heldSize is the piece size of these tests; a wrapper's header keeps
// the piece size above its low 24 bits, so it is a multiple of 1 MiB.
const heldSize = 1 << 20

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// offer is piece num of file as a supernode whose copy is file offers
// it: wrapped, with its md5 or, with blake3, its BLAKE3 digest.
func offer(file []byte, num int, blake3 bool) types.PieceInfo {
	wrapped := make([]byte, 0, piece.WrappedLength(int64(len(file)), heldSize))
	for i := 0; i < piece.Count(int64(len(file)), heldSize); i++ {
		wrapped = piece.Wrap(wrapped, file[piece.ContentOffset(i, heldSize):piece.ContentOffset(i, heldSize)+
			piece.ContentLength(i, int64(len(file)), heldSize)], heldSize)
	}
	rg := piece.Range(num, heldSize, int64(len(wrapped)))
	s, e, _ := piece.ParseRange(rg)
	pi := types.PieceInfo{PieceNum: num, Range: rg, PieceSize: heldSize, CID: "peer"}
	if blake3 {
		pi.PieceDigest = digest.Sum(digest.BLAKE3, wrapped[s:e+1]).String()
	} else {
		pi.PieceMd5 = piece.Md5Value(wrapped[s : e+1])
	}
	return pi
}

// Pieces written from supernode A's copy (version 1) are checked, from
// the file, against supernode B's digests after a migration: a piece B
// has the same is confirmed, one that differs is dropped (fetched
// again), and one offered without a digest is never taken unchecked.
func TestVerifyHeldFilePieces(t *testing.T) {
	const per = heldSize - piece.WrapSize
	v1 := bytes.Repeat([]byte("0123456789"), 3*per/10+7) // 4 pieces
	v2 := bytes.Clone(v1)                                // the same first piece
	v2[per+3] ^= 0xff                                    // the second differs
	w, err := NewFileWriter(filepath.Join(t.TempDir(), "f"), per)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for n := 0; n < 2; n++ {
		if err := w.WritePiece(context.Background(), pieceOf(v1, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	d := &P2P{Task: Task{Node: "B", PieceSize: heldSize}, Wrapped: true, Writer: w, Log: quietLog()}
	for _, blake3 := range []bool{false, true} {
		if ok, err := d.verifyHeld(context.Background(), offer(v2, 0, blake3)); !ok || err != nil {
			t.Fatalf("blake3 %v: piece 0, the same in both versions: ok %v, %v", blake3, ok, err)
		}
	}
	if ok, err := d.verifyHeld(context.Background(), offer(v2, 1, true)); ok || err != nil {
		t.Fatalf("piece 1 of version 1 taken for version 2's: ok %v, %v", ok, err)
	}
	if w.Has(1) || !w.Has(0) {
		t.Fatalf("after the mismatch: has 0 %v, has 1 %v; want piece 1 dropped only", w.Has(0), w.Has(1))
	}
	bare := offer(v2, 0, false)
	bare.PieceMd5 = ""
	if ok, err := d.verifyHeld(context.Background(), bare); ok || err != nil {
		t.Fatalf("a held piece offered without a digest: ok %v, %v", ok, err)
	}
}

// Source-CDN mode: the digest covers the plain bytes.
func TestVerifyHeldUnwrapped(t *testing.T) {
	data := bytes.Repeat([]byte("abc"), heldSize/2)
	w, err := NewFileWriter(filepath.Join(t.TempDir(), "f"), heldSize)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WritePiece(context.Background(), pieceOf(data, 0, heldSize)); err != nil {
		t.Fatal(err)
	}
	pi := types.PieceInfo{PieceNum: 0, Range: piece.Range(0, heldSize, int64(len(data))), PieceSize: heldSize,
		PieceDigest: digest.Sum(digest.BLAKE3, data[:heldSize]).String()}
	d := &P2P{Task: Task{Node: "B", PieceSize: heldSize}, Writer: w, Log: quietLog()}
	if ok, err := d.verifyHeld(context.Background(), pi); !ok || err != nil {
		t.Fatalf("ok %v, %v", ok, err)
	}
	pi.PieceDigest = digest.Sum(digest.BLAKE3, data[1:heldSize+1]).String()
	if ok, err := d.verifyHeld(context.Background(), pi); ok || err != nil || w.Has(0) {
		t.Fatalf("mismatch: ok %v, %v, still held %v", ok, err, w.Has(0))
	}
}

// A stream's bytes are out: a piece it wrote that the new supernode
// offers with another digest in the same algorithm fails the stream
// (ErrHeldMismatch); with the same digest it is confirmed; one that cannot
// be compared (another algorithm, as between a Damselfly and a Dragonfly
// 1.x supernode, or no digest on either side) proves nothing and ends the
// attempt with ErrHeldUncomparable (the stream then goes on from the
// source), never with ErrHeldMismatch.
func TestVerifyHeldStreamPieces(t *testing.T) {
	v1 := bytes.Repeat([]byte("x"), 2*heldSize)
	v2 := bytes.Repeat([]byte("y"), 2*heldSize)
	bare := offer(v1, 0, false)
	bare.PieceMd5 = ""
	for _, tc := range []struct {
		name        string
		had, offers types.PieceInfo
		ok          bool
		want        error
	}{
		{"same blake3", offer(v1, 0, true), offer(v1, 0, true), true, nil},
		{"same md5", offer(v1, 0, false), offer(v1, 0, false), true, nil},
		{"other blake3", offer(v1, 0, true), offer(v2, 0, true), false, ErrHeldMismatch},
		{"other md5", offer(v1, 0, false), offer(v2, 0, false), false, ErrHeldMismatch},
		{"blake3 then md5", offer(v1, 0, true), offer(v1, 0, false), false, ErrHeldUncomparable},
		{"md5 then blake3", offer(v1, 0, false), offer(v1, 0, true), false, ErrHeldUncomparable},
		{"blake3 then md5 of another version", offer(v1, 0, true), offer(v2, 0, false), false, ErrHeldUncomparable},
		{"no digest then none", bare, bare, false, ErrHeldUncomparable},
		{"no digest then md5", bare, offer(v1, 0, false), false, ErrHeldUncomparable},
		{"md5 then no digest", offer(v1, 0, false), bare, false, ErrHeldUncomparable},
	} {
		var out bytes.Buffer
		w := NewStreamWriter(&out, 4, false, false)
		p := pieceOf(v1, 0, heldSize-piece.WrapSize)
		p.Info = tc.had
		if err := w.WritePiece(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		d := &P2P{Task: Task{Node: "B", PieceSize: heldSize}, Wrapped: true, Writer: w, Log: quietLog()}
		ok, err := d.verifyHeld(context.Background(), tc.offers)
		if ok != tc.ok || !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: ok %v, %v; want ok %v, %v", tc.name, ok, err, tc.ok, tc.want)
		}
		if errors.Is(err, ErrHeldMismatch) && errors.Is(err, ErrHeldUncomparable) {
			t.Errorf("%s: both errors: %v", tc.name, err)
		}
		_, _ = w.Stop(context.Background())
	}
}

// A stream takes no wrapped piece without a digest, not even from the
// supernode: no whole-file md5 covers it before its bytes are out. The
// refusal ends the attempt (the stream goes on from the source), and
// nothing is fetched or written. A file writer still takes it (its
// whole-file md5 is then required: TestUndigestedPieceRequiresHashInCDNMode).
func TestStreamRefusesUndigestedSupernodePiece(t *testing.T) {
	data := bytes.Repeat([]byte("q"), heldSize)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(piece.Wrap(nil, data[:heldSize-piece.WrapSize], heldSize))
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	p, _ := strconv.Atoi(port)
	pi := types.PieceInfo{PieceNum: 0, Range: piece.Range(0, heldSize, -1), PieceSize: heldSize,
		CID: types.SuperNodeCIDPrefix + "x", PeerIP: host, PeerPort: p, Path: "/download/x"}
	var out bytes.Buffer
	w := NewStreamWriter(&out, 4, true, false)
	d := &P2P{Client: api.New(), Task: Task{Node: "n", PieceSize: heldSize}, Wrapped: true, Writer: w, Log: quietLog()}
	ok, err := d.fetch(context.Background(), pi, nil)
	n, _ := w.Stop(context.Background())
	if ok || !errors.Is(err, api.ErrNoDigest) || n != 0 || out.Len() != 0 || hits.Load() != 0 {
		t.Fatalf("stream: ok %v, %v; %d bytes written, %d fetches; want the piece refused unfetched", ok, err, n, hits.Load())
	}
}

// Finish cuts the file to its pieces' length: space reserved for a
// longer file must not trail the shorter one.
func TestFileWriterFinishTruncates(t *testing.T) {
	const per = 1000
	data := bytes.Repeat([]byte("z"), 2500)
	path := filepath.Join(t.TempDir(), "f")
	w, err := NewFileWriter(path, per)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Preallocate(4000); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 3; n++ {
		if err := w.WritePiece(context.Background(), pieceOf(data, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _, err := w.Finish(context.Background(), 3); err != nil || n != 2500 {
		t.Fatalf("finish: %d, %v", n, err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, data) {
		t.Fatalf("file is %d bytes, want the %d written", len(got), len(data))
	}
}

// A dropped piece the whole-file md5 already covered is hashed again
// when it is rewritten: the md5 is of the file's final bytes.
func TestFileWriterDropRehashes(t *testing.T) {
	const per = 100
	old := bytes.Repeat([]byte("a"), 300)
	data := bytes.Repeat([]byte("b"), 300)
	w, err := NewFileWriter(filepath.Join(t.TempDir(), "f"), per)
	if err != nil {
		t.Fatal(err)
	}
	w.EnableHash()
	ctx := context.Background()
	for n := 0; n < 2; n++ {
		if err := w.WritePiece(ctx, pieceOf(old, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	w.Drop(0)
	w.Drop(1)
	for _, n := range []int{2, 1, 0} {
		if err := w.WritePiece(ctx, pieceOf(data, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	_, sum, err := w.Finish(ctx, 3)
	want := md5.Sum(data)
	if err != nil || sum != hex.EncodeToString(want[:]) {
		t.Fatalf("md5 %s, %v; want that of the final bytes", sum, err)
	}
}

// A cdn-mode piece without a digest makes the whole-file md5 required; a
// source-CDN one, fetched from the download's own URL, only hashed.
func TestUndigestedPieceRequiresHashInCDNMode(t *testing.T) {
	data := bytes.Repeat([]byte("q"), heldSize)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := data
		if r.Header.Get("cdnSource") == "" {
			b = piece.Wrap(nil, data[:heldSize-piece.WrapSize], heldSize)
		}
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	p, _ := strconv.Atoi(port)
	for _, wrapped := range []bool{true, false} {
		w, err := NewFileWriter(filepath.Join(t.TempDir(), "f"), heldSize)
		if err != nil {
			t.Fatal(err)
		}
		pi := types.PieceInfo{PieceNum: 0, Range: piece.Range(0, heldSize, -1), PieceSize: heldSize,
			CID: types.SuperNodeCIDPrefix + "x", PeerIP: host, PeerPort: p, Path: "/download/x"}
		d := &P2P{Client: api.New(), Task: Task{Node: "n", PieceSize: heldSize}, Wrapped: wrapped,
			SourceURL: srv.URL + "/file", Writer: w, Log: quietLog()}
		if ok, err := d.fetch(context.Background(), pi, nil); !ok || err != nil {
			t.Fatalf("wrapped %v: fetch: %v, %v", wrapped, ok, err)
		}
		if w.HashRequired() != wrapped {
			t.Errorf("wrapped %v: hash required %v", wrapped, w.HashRequired())
		}
		w.Abort()
	}
}
