package downloader

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// rawPiece is piece num of b cut into pieces of per bytes, as a
// source-CDN supernode offers it without a digest (a Dragonfly 1.x one).
func rawPiece(b []byte, num, per int) *Piece {
	p := pieceOf(b, num, per)
	start := num * per
	p.Raw = true
	p.Info = types.PieceInfo{PieceNum: num, PieceSize: int32(per),
		Range: strconv.Itoa(start) + "-" + strconv.Itoa(start+len(p.Content)-1)}
	return p
}

// wrappedPiece is piece num of file as a cdn-pattern supernode offers it,
// with its md5 or its BLAKE3 digest (offer).
func wrappedPiece(file []byte, num int, blake3 bool) *Piece {
	c := int(piece.ContentSize(heldSize))
	p := pieceOf(file, num, c)
	p.Info = offer(file, num, blake3)
	return p
}

// streamed writes the pieces to a stream and stops it, as P2P leaves a
// stream that fails midway; out gets what it wrote.
func streamed(t *testing.T, out *bytes.Buffer, pieces ...*Piece) *StreamWriter {
	t.Helper()
	w := NewStreamWriter(out, len(pieces), false, false)
	ctx := context.Background()
	for _, p := range pieces {
		if err := w.WritePiece(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.Wait(ctx, len(pieces)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// A fallback writes the source's file from byte 0 into the stream's tail:
// the bytes already out are checked piece by piece against the digests
// they were verified with and never written again, and only the rest goes
// out. A source whose copy of them differs (same length, another version)
// fails before a byte of it is out, as does one that ends inside them.
func TestStreamTailChecksTheHead(t *testing.T) {
	c := int(piece.ContentSize(heldSize))
	v1 := bytes.Repeat([]byte("0123456789abcdef"), (3*c+100)/16)
	v2 := bytes.Clone(v1)
	v2[c+5] ^= 0xFF // in the second piece, which is out
	v2[len(v2)-1] ^= 0xFF
	for _, tc := range []struct {
		name   string
		pieces func(file []byte) []*Piece
	}{
		{"md5", func(f []byte) []*Piece { return []*Piece{wrappedPiece(f, 0, false), wrappedPiece(f, 1, false)} }},
		{"blake3", func(f []byte) []*Piece { return []*Piece{wrappedPiece(f, 0, true), wrappedPiece(f, 1, true)} }},
		{"raw without digest", func(f []byte) []*Piece { return []*Piece{rawPiece(f, 0, c), rawPiece(f, 1, c)} }},
	} {
		for _, src := range []struct {
			name string
			file []byte
			want error
		}{
			{"same", v1, nil},
			{"other version", v2, ErrSourceChanged},
			{"ends inside the head", v1[:c+7], ErrSourceChanged},
		} {
			var out bytes.Buffer
			tail, err := streamed(t, &out, tc.pieces(v1)...).Continue(context.Background(), 0)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			// In odd-sized writes, so that pieces straddle them.
			for b := src.file; len(b) > 0 && err == nil; b = b[min(len(b), 7777):] {
				_, err = tail.Write(b[:min(len(b), 7777)])
			}
			if err == nil {
				err = tail.Checked()
			}
			if !errors.Is(err, src.want) || (src.want == nil) != (err == nil) {
				t.Errorf("%s, source %s: %v, want %v", tc.name, src.name, err, src.want)
			}
			want := v1
			if src.want != nil {
				want = v1[:2*c]
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s, source %s: %d bytes out, want the first %d of the file", tc.name, src.name, out.Len(), len(want))
			}
		}
	}
}

// A wrapped piece out without a digest (which P2P never streams) leaves
// nothing to check the source's copy by: the fallback is refused before
// the source is read.
func TestStreamTailRefusesUncheckableHead(t *testing.T) {
	c := int(piece.ContentSize(heldSize))
	file := bytes.Repeat([]byte("z"), 2*c)
	bare := wrappedPiece(file, 0, false)
	bare.Info.PieceMd5 = ""
	var out bytes.Buffer
	if _, err := streamed(t, &out, bare).Continue(context.Background(), 0); !errors.Is(err, ErrHeadUnchecked) {
		t.Fatalf("Continue after a piece without a digest: %v", err)
	}
}

// A fallback whose reader stopped reading does not hang: a write to out
// still pending grace after the fallback's context ended fails with
// ErrOutStalled, as Stop gives up on one in P2P's part of the stream. The
// source's read ends with the context, a blocked write to a pipe does not.
func TestStreamTailGivesUpOnStalledReader(t *testing.T) {
	pr, pw := io.Pipe() // nobody reads
	t.Cleanup(func() { _ = pr.Close() })
	w := NewStreamWriter(pw, 1, false, false)
	if _, err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	tail, err := w.Continue(ctx, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := tail.Write([]byte("the source's bytes after the head"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrOutStalled) {
			t.Fatalf("write to a reader that stopped reading: %v, want ErrOutStalled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write to a reader that stopped reading is still pending 5 s after the fallback's deadline")
	}
}
