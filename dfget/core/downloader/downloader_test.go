package downloader

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func pieceOf(b []byte, num int, per int) *Piece {
	end := min((num+1)*per, len(b))
	return &Piece{Num: num, Content: b[num*per : end]}
}

func TestFileWriterOutOfOrderWithLateHash(t *testing.T) {
	const per = 1000
	data := bytes.Repeat([]byte("abcdefghij"), 537) // 5370 bytes, 6 pieces
	path := filepath.Join(t.TempDir(), "f")
	w, err := NewFileWriter(path, per)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, n := range []int{5, 3, 1} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.WritePiece(ctx, pieceOf(data, n, per)) }()
	}
	wg.Wait()
	w.EnableHash() // after some pieces: the hasher must catch up from 0
	for _, n := range []int{0, 4, 2} {
		if err := w.WritePiece(ctx, pieceOf(data, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	n, sum, err := w.Finish(ctx, 6)
	if err != nil {
		t.Fatal(err)
	}
	want := md5.Sum(data)
	if n != int64(len(data)) || sum != hex.EncodeToString(want[:]) {
		t.Fatalf("length %d md5 %s", n, sum)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, data) {
		t.Fatal("file content differs")
	}
}

func TestFileWriterMissingPiece(t *testing.T) {
	w, err := NewFileWriter(filepath.Join(t.TempDir(), "f"), 10)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.WritePiece(context.Background(), &Piece{Num: 1, Content: make([]byte, 10)})
	if _, _, err := w.Finish(context.Background(), 2); err == nil || !strings.Contains(err.Error(), "piece 0 missing") {
		t.Fatalf("finish with a hole: %v", err)
	}
}

func TestPublishLeavesTargetOnFailure(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "out")
	if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Publish(filepath.Join(dir, "missing"), dst); err == nil {
		t.Fatal("published a missing file")
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Fatalf("target changed to %q", b)
	}
	src := filepath.Join(dir, "src")
	_ = os.WriteFile(src, []byte("new"), 0o644)
	if err := Publish(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "new" {
		t.Fatalf("target is %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("leftovers: %v", ents)
	}
}

func TestStreamWriterOrderAndWindow(t *testing.T) {
	var out bytes.Buffer
	w := NewStreamWriter(&out, 3, true, false)
	ctx := context.Background()
	data := []byte("aaabbbcccdddeee")
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := w.Admit(tctx, 3); err == nil {
		t.Fatal("piece 3 admitted with window [0,3)")
	}
	cancel()
	var rel []func()
	for _, n := range []int{2, 1, 0} {
		r, err := w.Admit(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		rel = append(rel, r)
	}
	// The window is full: a fourth admission must wait.
	tctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := w.Admit(tctx, 1); err == nil {
		t.Fatal("admitted beyond the window")
	}
	cancel()
	for i, n := range []int{2, 1, 0} {
		p := pieceOf(data, n, 3)
		r := rel[i]
		p.release = r
		if err := w.WritePiece(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{3, 4} {
		r, err := w.Admit(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		p := pieceOf(data, n, 3)
		p.release = r
		_ = w.WritePiece(ctx, p)
	}
	n, sum, err := w.Wait(ctx, 5)
	if err != nil || n != int64(len(data)) || out.String() != string(data) {
		t.Fatalf("wrote %q (%d, %v)", out.String(), n, err)
	}
	want := md5.Sum(data)
	if sum != hex.EncodeToString(want[:]) {
		t.Fatalf("md5 %s", sum)
	}
	if written, _ := w.Stop(context.Background()); written != int64(len(data)) {
		t.Fatalf("stop reports %d", written)
	}
}

type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) { return 0, syscall.EPIPE }

func TestStreamWriterConsumerGone(t *testing.T) {
	w := NewStreamWriter(brokenPipe{}, 2, false, false)
	ctx := context.Background()
	_ = w.WritePiece(ctx, &Piece{Num: 0, Content: []byte("x")})
	if _, _, err := w.Wait(ctx, 1); !errors.Is(err, ErrConsumerGone) {
		t.Fatalf("wait: %v", err)
	}
	if err := w.WritePiece(ctx, &Piece{Num: 1, Content: []byte("y")}); !errors.Is(err, ErrConsumerGone) {
		t.Fatalf("write after EPIPE: %v", err)
	}
}

// The source without a user Range is the whole file, from an origin
// that honours Range or not, and file mode checks --md5.
func TestSourceCopyWholeFile(t *testing.T) {
	data := []byte("0123456789")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/norange" {
			_, _ = w.Write(data)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	for _, path := range []string{"/f", "/norange"} {
		s := &BackSource{HTTP: srv.Client(), URL: srv.URL + path}
		var out bytes.Buffer
		if _, err := s.Copy(context.Background(), &out, -1, nil); err != nil || out.String() != string(data) {
			t.Errorf("%s: %q, %v; want %q", path, out.String(), err, data)
		}
	}
	s := &BackSource{HTTP: srv.Client(), URL: srv.URL + "/f"}
	if _, err := s.DownloadFile(context.Background(), filepath.Join(t.TempDir(), "o"), "00000000000000000000000000000000", nil); err == nil {
		t.Error("md5 mismatch accepted")
	}
}

func TestFileWriterInOrderHashesFromMemory(t *testing.T) {
	const per = 100
	data := bytes.Repeat([]byte("0123456789"), 95)
	w, err := NewFileWriter(filepath.Join(t.TempDir(), "f"), per)
	if err != nil {
		t.Fatal(err)
	}
	w.EnableHash()
	for n := 0; n < 10; n++ {
		if err := w.WritePiece(context.Background(), pieceOf(data, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	n, sum, err := w.Finish(context.Background(), 10)
	want := md5.Sum(data)
	if err != nil || n != int64(len(data)) || sum != hex.EncodeToString(want[:]) {
		t.Fatalf("length %d md5 %s err %v", n, sum, err)
	}
}
