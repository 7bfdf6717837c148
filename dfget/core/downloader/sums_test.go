package downloader

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// --digest's sha256 covers the whole file even when the md5 is enabled
// after hashing began (a piece without a digest arrived): the hasher then
// starts over with both, and each is the digest of every byte.
func TestFileWriterSha256AndLateMd5(t *testing.T) {
	const per = 1000
	data := bytes.Repeat([]byte("0123456789abcdef"), 400) // 6400 bytes, 7 pieces
	w, err := NewFileWriter(filepath.Join(t.TempDir(), "f"), per)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w.EnableSha256()
	for _, n := range []int{0, 1, 2, 5} {
		if err := w.WritePiece(ctx, pieceOf(data, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	w.EnableHash()
	for _, n := range []int{6, 3, 4} {
		if err := w.WritePiece(ctx, pieceOf(data, n, per)); err != nil {
			t.Fatal(err)
		}
	}
	n, sum, err := w.Finish(ctx, 7)
	if err != nil || n != int64(len(data)) || sum != piece.Md5Hex(data) {
		t.Fatalf("finish: %d %s %v", n, sum, err)
	}
	if got := w.Sha256(); got != digest.Sum(digest.SHA256, data) {
		t.Fatalf("sha256 %v", got)
	}
}

// The stream writer keeps the sha256 of what it wrote, fallback tail
// included; without --digest it computes none (and the zero digest matches
// no expectation).
func TestStreamWriterSha256(t *testing.T) {
	var out bytes.Buffer
	data := []byte("aaabbbcccdddeee")
	w := NewStreamWriter(&out, 2, false, true)
	ctx := context.Background()
	for _, n := range []int{1, 0} {
		if _, err := w.Admit(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := w.WritePiece(ctx, rawPiece(data, n, 3)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.Wait(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tail, err := w.Continue(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Write(data); err != nil {
		t.Fatal(err)
	}
	if got := w.Sha256(); got != digest.Sum(digest.SHA256, data) || out.String() != string(data) {
		t.Fatalf("sha256 %v of %q", got, out.String())
	}
	plain := NewStreamWriter(&bytes.Buffer{}, 1, false, false)
	defer plain.Stop(context.Background())
	if want := digest.Sum(digest.SHA256, nil); want.Check(plain.Sha256()) == nil {
		t.Fatal("a stream without --digest matched a sha256")
	}
}

// The source's file is checked against --digest: a mismatch leaves no
// output, the right digest publishes it.
func TestBackSourceChecksDigest(t *testing.T) {
	data := []byte("the source file")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "o")
	s := &BackSource{HTTP: srv.Client(), URL: srv.URL + "/f", Digest: digest.Sum(digest.SHA256, []byte("other"))}
	var mm *digest.MismatchError
	if _, err := s.DownloadFile(context.Background(), out, "", nil); !errors.As(err, &mm) {
		t.Fatalf("wrong digest: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output after a mismatch: %v", err)
	}
	s.Digest = digest.Sum(digest.SHA256, data)
	if n, err := s.DownloadFile(context.Background(), out, "", nil); err != nil || n != int64(len(data)) {
		t.Fatalf("right digest: %d %v", n, err)
	}
}
