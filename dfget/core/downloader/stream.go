package downloader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

// ErrOutOfWindow is a piece beyond the stream window: the writer will not
// hold it, so the pull loop gives it back instead of fetching it.
var ErrOutOfWindow = errors.New("piece outside the stream window")

var (
	_ Writer    = (*StreamWriter)(nil)
	_ Gate      = (*StreamWriter)(nil)
	_ HasPieces = (*StreamWriter)(nil)
)

// StreamWriter writes pieces to out strictly in order. It holds at most
// window pieces (in flight or waiting for their turn): Admit blocks the pull
// loop when the window is full, so memory stays bounded however slow the
// reader of out is.
type StreamWriter struct {
	out    io.Writer
	window int
	slots  chan struct{}
	// Push, if set, is called with each verified piece once it is held
	// (the peer server's stream cache), while the piece may already be
	// going to out; its error is only logged by it. A piece marked NoShare
	// is not pushed: no one would fetch it. Set it only while no piece is
	// being written.
	Push func(ctx context.Context, p *Piece)

	mu   sync.Mutex
	cond *sync.Cond
	next int
	held map[int]*Piece
	// kept is what the stream keeps of each piece held or written, in
	// place of its bytes: the digest it was verified with, to check a
	// piece a new supernode offers again after a migration, or the
	// source's copy of the pieces written after a fallback (Continue).
	kept    map[int]keptPiece
	stopped bool
	err     error
	written int64
	// writing is the length of the piece on its way to out: neither held
	// nor written while run has the lock released.
	writing int64
	// cur is the number of that piece, -1 while run writes none: a
	// supernode the stream moved to may offer it again meanwhile, and it
	// must count as had (Has), not be fetched and held past next.
	cur int
	// outAt is when out last took bytes (or run began a write): how long
	// a reader has not read, for Stop.
	outAt time.Time
	// abandoned is set by a Stop that gave up on a stalled out: run
	// starts no other write.
	abandoned bool
	// headFrom is when the stream's first piece was admitted: its head
	// start counts from then (a supernode that offers other pieces first,
	// as a Dragonfly 1.x one may, has no head start to wait for).
	// headDone is set once the stream's next piece was held.
	headFrom time.Time
	headDone bool
	h        digest.Whole
	done     chan struct{}
}

// NewStreamWriter starts a stream writer to out with the given window.
// It keeps the md5 of the whole stream with md5Sum (for --md5), its
// sha256 with sha256Sum (for --digest); each piece is verified on its own
// either way.
func NewStreamWriter(out io.Writer, window int, md5Sum, sha256Sum bool) *StreamWriter {
	w := &StreamWriter{out: out, window: window, slots: make(chan struct{}, window), held: map[int]*Piece{},
		kept: map[int]keptPiece{}, done: make(chan struct{}), h: digest.NewWhole(md5Sum, sha256Sum), cur: -1}
	w.cond = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// Admit implements Gate. A piece beyond the window waits until the
// stream has moved far enough (the supernode's window runs ahead of ours
// by the pieces held for a slow reader); after outOfWindowWait it is given
// back with ErrOutOfWindow, so a supernode without windows cannot stall us.
//
// Before the first byte is out, a piece other than the stream's next one
// also waits (at most headStartWait) until that next piece is verified:
// fetched alongside the rest of the window, the first piece would share
// the link with them and arrive when they do, a window's time instead of
// a piece's.
func (w *StreamWriter) Admit(ctx context.Context, num int) (func(), error) {
	wctx, cancel := context.WithTimeout(ctx, outOfWindowWait)
	defer cancel()
	stop := context.AfterFunc(wctx, w.wake)
	defer stop()
	w.mu.Lock()
	if w.headFrom.IsZero() && num == w.next {
		w.headFrom = time.Now()
	}
	if w.headStart(num) {
		t := time.AfterFunc(time.Until(w.headFrom.Add(headStartWait)), w.wake)
		defer t.Stop()
	}
	for w.err == nil && !w.stopped && (num >= w.next+w.window || w.headStart(num)) && wctx.Err() == nil {
		w.cond.Wait()
	}
	next, err := w.next, w.err
	w.mu.Unlock()
	switch {
	case err != nil:
		return nil, err
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case num < next || num >= next+w.window:
		return nil, ErrOutOfWindow
	}
	select {
	case w.slots <- struct{}{}:
		return func() { <-w.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// outOfWindowWait bounds how long Admit holds a piece beyond the window.
const outOfWindowWait = 5 * time.Second

// headStartWait bounds the first piece's head start, so a first piece
// whose holder stalls does not hold the rest of the window back for long.
const headStartWait = 250 * time.Millisecond

// headStart reports that piece num waits for the stream's first piece
// (Admit); w.mu is held.
func (w *StreamWriter) headStart(num int) bool {
	return num > w.next && !w.headDone && !w.headFrom.IsZero() && time.Since(w.headFrom) < headStartWait
}

// wake wakes the waiters on w.cond so they check their conditions again.
func (w *StreamWriter) wake() { w.mu.Lock(); w.cond.Broadcast(); w.mu.Unlock() }

// WritePiece implements Writer.
func (w *StreamWriter) WritePiece(ctx context.Context, p *Piece) error {
	k := keep(p)
	w.mu.Lock()
	if w.err != nil || w.stopped {
		err := w.err
		w.mu.Unlock()
		p.Release()
		if err == nil {
			err = errors.New("stream writer stopped")
		}
		return err
	}
	if p.Num < w.next || w.held[p.Num] != nil || p.Num == w.cur {
		w.mu.Unlock()
		p.Release()
		return nil
	}
	if p.Num >= w.next+w.window {
		w.mu.Unlock()
		p.Release()
		return ErrOutOfWindow
	}
	// Held first: the piece may leave for out at once, while the push
	// to the stream cache (a copy and two local calls) runs beside it.
	// The push still ends before WritePiece returns, so the piece is in
	// the cache before /peer/piece/suc reports it; the supernode offers
	// it from this peer only on the cache's own note.
	push := w.Push
	if p.NoShare {
		push = nil
	}
	if push != nil {
		p.share()
	}
	w.held[p.Num] = p
	w.kept[p.Num] = k
	if p.Num == w.next {
		w.headDone = true
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	if push != nil {
		push(ctx, p)
		p.Release()
	}
	return nil
}

func (w *StreamWriter) run() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for w.held[w.next] == nil && !w.stopped {
			w.cond.Wait()
		}
		p := w.held[w.next]
		if p == nil || w.abandoned {
			return
		}
		delete(w.held, w.next)
		w.writing, w.cur, w.outAt = int64(len(p.Content)), p.Num, time.Now()
		w.mu.Unlock()
		err := w.writeOut(p.Content)
		p.Release()
		w.mu.Lock()
		w.writing, w.cur = 0, -1
		if err != nil {
			w.fail(err)
			return
		}
		w.written += int64(len(p.Content))
		w.next++
		w.cond.Broadcast()
	}
}

// writeOut writes b to out and the running hashes, noting in w.outAt when
// out took it; w.mu is not held. A piece goes out in one write: in pieces
// of it, each write into a pipe that had been emptied wakes the reader
// again, and on a machine of few cores those wake-ups cost a stream its
// margin over file mode. A reader that stalls is still caught, by the
// write that does not end (Stop); outAt then dates the last whole piece.
func (w *StreamWriter) writeOut(b []byte) error {
	if _, err := w.out.Write(b); err != nil {
		return err
	}
	_, _ = w.h.Write(b)
	w.mu.Lock()
	w.outAt = time.Now()
	w.mu.Unlock()
	return nil
}

// fail ends the writer with the error writing to out returned; w.mu is
// held.
func (w *StreamWriter) fail(err error) {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe) {
		err = ErrConsumerGone
	} else {
		err = fmt.Errorf("write stream: %w", err)
	}
	w.err = err
	w.stopped = true
	w.cond.Broadcast()
	for k, hp := range w.held {
		hp.Release()
		delete(w.held, k)
	}
}

// Wait blocks until count pieces are written (or the writer failed) and
// returns the bytes written and their md5.
func (w *StreamWriter) Wait(ctx context.Context, count int) (int64, string, error) {
	stop := context.AfterFunc(ctx, w.wake)
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.next < count && w.err == nil && ctx.Err() == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		return w.written, "", w.err
	}
	if err := ctx.Err(); err != nil {
		return w.written, "", err
	}
	return w.written, w.sum(), nil
}

// Stop flushes the contiguous pieces already held, drops the rest and
// stops the writer. It returns the bytes written, the state a fallback to
// the source continues from, and the writer's error if it failed.
//
// Once ctx is done, a write that out has not taken bytes of is given up:
// Stop returns ErrOutStalled, and the writer's goroutine stays blocked in
// out.Write (it ends with the process; nothing else can unblock a write
// to a pipe no one reads).
func (w *StreamWriter) Stop(ctx context.Context) (int64, error) {
	w.mu.Lock()
	w.stopped = true
	w.cond.Broadcast()
	w.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.mu.Lock()
		w.abandoned = true
		if w.cur >= 0 {
			defer w.mu.Unlock()
			w.dropHeld()
			return w.written, fmt.Errorf("stdout not read for %v: %w", time.Since(w.outAt).Round(time.Second), ErrOutStalled)
		}
		w.mu.Unlock()
		<-w.done // run, between writes, sees abandoned and returns
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dropHeld()
	return w.written, w.err
}

// ErrOutStalled is a stream whose reader stopped taking bytes.
var ErrOutStalled = errors.New("stream output stalled")

// dropHeld releases the pieces held for writing; w.mu is held.
func (w *StreamWriter) dropHeld() {
	for k, p := range w.held {
		p.Release()
		delete(w.held, k)
	}
}

// Has implements HasPieces: piece num is written or held for writing. A
// supernode the stream moved to that ignored where it resumed offers
// such a piece again.
func (w *StreamWriter) Has(num int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return num < w.next || w.held[num] != nil || num == w.cur
}

// PieceDigest is the digest piece num was verified with, "" if it is not
// held or written or came without one.
func (w *StreamWriter) PieceDigest(num int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return pieceDigest(w.kept[num].info)
}

// Next is the number of pieces written so far: where the stream resumes.
func (w *StreamWriter) Next() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// Committed is the bytes written plus those of the verified pieces held
// for writing or being written: the least the stream will have put out.
func (w *StreamWriter) Committed() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.written + w.writing
	for _, p := range w.held {
		n += int64(len(p.Content))
	}
	return n
}

// Sum is the md5 of everything written, "" without hashing.
func (w *StreamWriter) Sum() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sum()
}

func (w *StreamWriter) sum() string { return w.h.Md5Hex() }

// Sha256 is the sha256 of everything written (zero without it).
func (w *StreamWriter) Sha256() digest.Digest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.h.Sha256()
}
