package downloader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

// keptPiece is what a stream keeps of a piece it holds or wrote out, in
// place of its bytes: the offer it was verified against, trimmed to what
// api.VerifyHeld reads, whether it was served raw, and its content length.
type keptPiece struct {
	info types.PieceInfo
	raw  bool
	n    int
	// own is this client's BLAKE3 of a raw piece that came without a
	// digest (a Dragonfly 1.x supernode's source-CDN piece, which dfget
	// fetched from the source itself). It is never taken for the
	// piece's digest towards a supernode (PieceDigest); it only lets a
	// fallback tell whether the source still holds those bytes.
	own string
}

// keep is what the stream keeps of p.
func keep(p *Piece) keptPiece {
	i := p.Info
	k := keptPiece{info: types.PieceInfo{PieceNum: p.Num, Range: i.Range, PieceSize: i.PieceSize,
		PieceMd5: i.PieceMd5, PieceDigest: i.PieceDigest}, raw: p.Raw, n: len(p.Content)}
	if p.Raw && pieceDigest(i) == "" {
		k.own = digest.Sum(digest.BLAKE3, p.Content).String()
	}
	return k
}

// checkable reports whether the piece has a digest to check its bytes by.
func (k keptPiece) checkable() bool { return k.own != "" || pieceDigest(k.info) != "" }

// verify checks content, the piece's bytes fetched again, against the
// digest the piece was verified with, wrapped as it was served.
func (k keptPiece) verify(content []byte) error {
	info := k.info
	if k.own != "" {
		info.PieceDigest = k.own
	}
	return api.VerifyHeld(info, !k.raw, content)
}

// ErrHeadUnchecked is a stream with a piece out that nothing can check
// the source's copy of: no fallback could show that the source holds the
// version those bytes are of, so none is made.
var ErrHeadUnchecked = errors.New("the bytes already written cannot be checked against the source")

// Continue returns what a fallback to the source copies the file into,
// from its byte 0, after Stop. The bytes already out are not written
// again: each of their pieces is checked, once the source's copy of it is
// in, against the digest it was verified with, and one that differs fails
// the write with ErrSourceChanged (the source holds another version,
// whose bytes must not follow). Only the bytes after them go to out, and
// into the running hashes. A piece out without a digest fails Continue
// (ErrHeadUnchecked), before the source is asked for anything.
//
// A write to out still pending grace after ctx ends fails with
// ErrOutStalled, as Stop gives up on a reader that stopped reading: the
// source's read ends with ctx, but nothing else ends a write to a pipe no
// one reads.
func (w *StreamWriter) Continue(ctx context.Context, grace time.Duration) (*StreamTail, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	head := make([]keptPiece, w.next)
	longest := 0
	for i := range head {
		k, ok := w.kept[i]
		if !ok || !k.checkable() {
			return nil, fmt.Errorf("piece %d was written out without a digest: %w", i, ErrHeadUnchecked)
		}
		head[i], longest = k, max(longest, k.n)
	}
	return &StreamTail{w: w, ctx: ctx, grace: grace, head: head, buf: make([]byte, 0, longest)}, nil
}

// StreamTail is the stream a fallback to the source writes (Continue).
type StreamTail struct {
	w     *StreamWriter
	ctx   context.Context
	grace time.Duration
	// head is the pieces already out not yet checked, in order, from
	// piece num; buf holds what came of the first so far, and checked
	// counts the bytes of those before it.
	head    []keptPiece
	num     int
	buf     []byte
	checked int64
}

// Write checks the bytes of b that are the stream's already out, and
// writes the rest to out.
func (t *StreamTail) Write(b []byte) (int, error) {
	n, err := t.checkHead(b)
	if err != nil || n == len(b) {
		return n, err
	}
	w := t.w
	m, err := t.writeOut(b[n:])
	w.mu.Lock()
	_, _ = w.h.Write(b[n : n+m])
	w.written += int64(m)
	w.mu.Unlock()
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe)) {
		err = ErrConsumerGone
	}
	return n + m, err
}

// writeOut writes b to out, giving the write up (ErrOutStalled) when it
// is still pending grace after t.ctx ended. The write then goes on in its
// goroutine, blocked until the process ends, and b is not read again by
// the copy that gets the error.
func (t *StreamTail) writeOut(b []byte) (int, error) {
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := t.w.out.Write(b)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-t.ctx.Done():
	}
	timer := time.NewTimer(t.grace)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.n, r.err
	case <-timer.C:
		return 0, fmt.Errorf("stdout not read for %v after the download's end: %w", t.grace, ErrOutStalled)
	}
}

// checkHead takes from b the bytes of the pieces already out, checking
// each piece once it is whole, and returns how many it took.
func (t *StreamTail) checkHead(b []byte) (int, error) {
	n := 0
	for len(t.head) > 0 {
		k := t.head[0]
		c := min(len(b)-n, k.n-len(t.buf))
		t.buf = append(t.buf, b[n:n+c]...)
		n += c
		if len(t.buf) < k.n {
			return n, nil
		}
		if err := k.verify(t.buf); err != nil {
			return n, fmt.Errorf("piece %d, already written out, differs from the source's: %w: %w", t.num, err, ErrSourceChanged)
		}
		t.head, t.num, t.buf, t.checked = t.head[1:], t.num+1, t.buf[:0], t.checked+int64(k.n)
	}
	return n, nil
}

// Checked is nil once every byte out before the fallback was checked:
// a source that ended before is another version of the file.
func (t *StreamTail) Checked() error {
	if _, err := t.checkHead(nil); err != nil || len(t.head) == 0 {
		return err
	}
	return fmt.Errorf("the file ends at byte %d, inside the bytes already written: %w", t.checked+int64(len(t.buf)), ErrSourceChanged)
}
