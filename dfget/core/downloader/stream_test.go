package downloader

import (
	"bytes"
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"
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
	t.Cleanup(func() { w.Stop() })
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
	defer w.Stop()
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
	defer w.Stop()
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
	defer w.Stop()
	t0 := time.Now()
	if _, err := w.Admit(context.Background(), 2); err != nil || time.Since(t0) > headStartWait/2 {
		t.Fatalf("piece 2: %v after %v", err, time.Since(t0))
	}
}
