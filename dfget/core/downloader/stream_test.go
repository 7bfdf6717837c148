package downloader

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// admitAsync runs w.Admit(num) in the background; the channel gets its
// error when it returns.
func admitAsync(w *StreamWriter, num int) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := w.Admit(context.Background(), num)
		done <- err
	}()
	return done
}

// firstAdmitted is a stream writer of window 4 whose piece 0 is admitted;
// the test's end stops it.
func firstAdmitted(t *testing.T) *StreamWriter {
	t.Helper()
	w := NewStreamWriter(discard{}, 4, false, false)
	t.Cleanup(func() { w.Stop(context.Background()) })
	if _, err := w.Admit(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestStreamWriterFirstPieceHeadStart(t *testing.T) {
	w := firstAdmitted(t)
	ctx := context.Background()
	second := admitAsync(w, 1)
	select {
	case err := <-second:
		t.Fatalf("piece 1 admitted (%v) before piece 0 arrived", err)
	case <-time.After(headStartWait / 5):
	}
	if err := w.WritePiece(ctx, &Piece{Num: 0, Content: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(headStartWait / 2):
		t.Fatal("piece 1 still waits after piece 0 arrived")
	}
	// Once the stream has begun, pieces are admitted at once.
	t0 := time.Now()
	if _, err := w.Admit(ctx, 2); err != nil || time.Since(t0) > headStartWait/2 {
		t.Fatalf("piece 2: %v after %v", err, time.Since(t0))
	}
}

func TestStreamWriterHeadStartIsBounded(t *testing.T) {
	w := firstAdmitted(t)
	ctx := context.Background()
	t0 := time.Now()
	if _, err := w.Admit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < headStartWait/2 || d > 4*headStartWait {
		t.Fatalf("piece 1 admitted after %v with piece 0 missing, want about %v", d, headStartWait)
	}
}

// gatedOut is an out whose writes signal wrote.
type gatedOut struct{ wrote chan []byte }

func (g gatedOut) Write(b []byte) (int, error) {
	g.wrote <- append([]byte(nil), b...)
	return len(b), nil
}

func TestStreamWriterWritesOutBeforePushEnds(t *testing.T) {
	out := gatedOut{wrote: make(chan []byte, 4)}
	w := NewStreamWriter(out, 2, false, false)
	defer w.Stop(context.Background())
	var released atomic.Int32
	var pushEnded atomic.Bool
	w.Push = func(ctx context.Context, p *Piece) {
		// The piece must reach out while its push is still running.
		select {
		case b := <-out.wrote:
			if string(b) != "abc" {
				t.Errorf("out got %q", b)
			}
		case <-time.After(5 * time.Second):
			t.Error("piece not written to out during its push")
		}
		if released.Load() != 0 || string(p.Wrapped) != "[abc]" {
			t.Errorf("piece released (%d) or changed (%q) during its push", released.Load(), p.Wrapped)
		}
		pushEnded.Store(true)
	}
	p := &Piece{Num: 0, Content: []byte("abc"), Wrapped: []byte("[abc]"), release: func() {
		if !pushEnded.Load() {
			t.Error("buffer returned before the push ended")
		}
		released.Add(1)
	}}
	if err := w.WritePiece(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Wait(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if n := released.Load(); n != 1 {
		t.Fatalf("buffer returned %d times, want once", n)
	}
}

// A piece the supernode marked NoShare goes out but not to the stream
// cache; the others still do.
func TestStreamWriterSkipsPushOfNoSharePiece(t *testing.T) {
	var out bytes.Buffer
	w := NewStreamWriter(&out, 2, false, false)
	defer w.Stop(context.Background())
	var pushed []int
	w.Push = func(_ context.Context, p *Piece) { pushed = append(pushed, p.Num) }
	released := 0
	for i, noShare := range []bool{true, false} {
		p := &Piece{Num: i, NoShare: noShare, Content: []byte{'a' + byte(i)}, release: func() { released++ }}
		if err := w.WritePiece(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.Wait(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ab" || !slices.Equal(pushed, []int{1}) || released != 2 {
		t.Fatalf("out %q, pushed %v, released %d; want ab, [1], 2", out.String(), pushed, released)
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// A supernode that offers other pieces before the first (Dragonfly 1.x
// orders by rarity) gets them admitted at once: there is no first piece
// in flight to wait for.
func TestStreamWriterNoHeadStartWithoutFirstPiece(t *testing.T) {
	w := NewStreamWriter(discard{}, 4, false, false)
	defer w.Stop(context.Background())
	t0 := time.Now()
	if _, err := w.Admit(context.Background(), 2); err != nil || time.Since(t0) > headStartWait/2 {
		t.Fatalf("piece 2: %v after %v", err, time.Since(t0))
	}
}

// heldOut is an out whose writes wait for the test: entered gets each
// write as it begins, and it returns once release is sent to (or closed).
type heldOut struct {
	entered chan struct{}
	release chan struct{}
}

func newHeldOut() heldOut {
	return heldOut{entered: make(chan struct{}, 8), release: make(chan struct{}, 8)}
}

func (h heldOut) Write(b []byte) (int, error) {
	h.entered <- struct{}{}
	<-h.release
	return len(b), nil
}

// A piece on its way to out when a supernode the stream moved to offers
// it again is had: Has says so (the pull loop then checks its digest
// instead of fetching it), its digest still answers, and a second copy
// is dropped. Held again, it would never be written nor released: each
// such piece took a window slot for good and counted in Committed.
func TestStreamWriterPieceBeingWrittenIsHad(t *testing.T) {
	out := newHeldOut()
	w := NewStreamWriter(out, 2, false, false)
	defer func() { close(out.release); w.Stop(context.Background()) }()
	ctx := context.Background()
	rel, err := w.Admit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePiece(ctx, &Piece{Num: 0, Content: []byte("a"), Info: types.PieceInfo{PieceMd5: "x"}, release: rel}); err != nil {
		t.Fatal(err)
	}
	<-out.entered // piece 0 is being written; next is still 0
	if !w.Has(0) {
		t.Error("piece 0 not had while being written")
	}
	if d := w.PieceDigest(0); d != "md5:x" {
		t.Errorf("digest of piece 0 while being written: %q", d)
	}
	released := false
	if err := w.WritePiece(ctx, &Piece{Num: 0, Content: []byte("a"), release: func() { released = true }}); err != nil {
		t.Fatal(err)
	}
	if !released {
		t.Error("second copy of the piece being written kept")
	}
	out.release <- struct{}{}
	for w.Next() != 1 {
		time.Sleep(time.Millisecond)
	}
	if c := w.Committed(); c != 1 {
		t.Errorf("Committed %d after piece 0 (1 byte) written, want 1", c)
	}
	// Pieces 1 and 2 fill the window of 2 from next 1.
	for _, n := range []int{1, 2} {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := w.Admit(actx, n)
		cancel()
		if err != nil {
			t.Fatalf("admit %d with next 1, window 2: %v", n, err)
		}
	}
}

// A reader that stopped reading: once Stop's context ends, Stop gives up
// on the write out is stuck in (the goroutine stays blocked; the process
// ends it) instead of waiting for it for good.
func TestStreamWriterStopGivesUpOnStalledOut(t *testing.T) {
	out := newHeldOut()
	w := NewStreamWriter(out, 2, false, false)
	defer close(out.release)
	ctx := context.Background()
	if err := w.WritePiece(ctx, &Piece{Num: 0, Content: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePiece(ctx, &Piece{Num: 1, Content: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	<-out.entered
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := w.Stop(sctx); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrOutStalled) {
			t.Fatalf("Stop: %v, want ErrOutStalled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop still waits for a write out does not take")
	}
	// Released, the stuck write ends and no other begins.
	out.release <- struct{}{}
	select {
	case <-out.entered:
		t.Error("piece 1 written after Stop gave up")
	case <-time.After(100 * time.Millisecond):
	}
}
