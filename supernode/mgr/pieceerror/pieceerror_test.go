package pieceerror

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

func TestHandle(t *testing.T) {
	ctrl := gomock.NewController(t)
	tasks, c, gc := NewMockTasks(ctrl), NewMockCDN(ctrl), NewMockGC(ctrl)
	dir := t.TempDir()
	wrapped := piece.Wrap(nil, []byte("content"), 16)
	if err := os.WriteFile(filepath.Join(dir, "good"), wrapped, 0o644); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := New("super", tasks, c, gc, func(id string) string { return filepath.Join(dir, id) }, log)

	// Reports about other peers are ignored.
	if err := m.Report(types.PieceErrorRequest{TaskID: "good", DstPid: "peer", ErrorType: types.PieceErrorFileNotExist}); err != nil {
		t.Fatal(err)
	}
	if err := m.Report(types.PieceErrorRequest{TaskID: "good", DstPid: "super", ErrorType: "WHAT"}); err == nil {
		t.Fatal("unknown type accepted")
	}
	// A file that exists is not dropped; a missing one is.
	m.Handle(types.PieceErrorRequest{TaskID: "good", DstPid: "super", ErrorType: types.PieceErrorFileNotExist})
	gc.EXPECT().GCTask("gone", true)
	m.Handle(types.PieceErrorRequest{TaskID: "gone", DstPid: "super", ErrorType: types.PieceErrorFileNotExist})

	// Checked against the piece's BLAKE3: intact piece kept, damaged piece
	// dropped.
	rng := "0-" + strconv.Itoa(len(wrapped)-1)
	tasks.EXPECT().Info("good").Return(types.TaskInfo{PieceSize: 16}, nil).Times(2)
	c.EXPECT().PieceDigest("good", 0).Return(digest.Sum(digest.BLAKE3, wrapped))
	m.Handle(types.PieceErrorRequest{TaskID: "good", DstPid: "super", ErrorType: types.PieceErrorFileMd5NotMatch, Range: rng})
	c.EXPECT().PieceDigest("good", 0).Return(digest.Sum(digest.BLAKE3, []byte("other bytes")))
	gc.EXPECT().GCTask("good", true)
	m.Handle(types.PieceErrorRequest{TaskID: "good", DstPid: "super", ErrorType: types.PieceErrorFileMd5NotMatch, Range: rng})

	// Queued reports are handled by Run, duplicates within the hold dropped.
	gc.EXPECT().GCTask("q", true).Times(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	for range 3 {
		if err := m.Report(types.PieceErrorRequest{TaskID: "q", DstPid: "super", ErrorType: types.PieceErrorFileNotExist}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
}

// The CDN's own damage report takes a client report's path: queued, the
// range checked against the file, the task dropped only if it is damaged.
func TestCacheDamaged(t *testing.T) {
	ctrl := gomock.NewController(t)
	tasks, c, gc := NewMockTasks(ctrl), NewMockCDN(ctrl), NewMockGC(ctrl)
	dir := t.TempDir()
	wrapped := piece.Wrap(nil, []byte("content"), 16)
	for _, id := range []string{"bad", "good"} {
		if err := os.WriteFile(filepath.Join(dir, id), wrapped, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := New("super", tasks, c, gc, func(id string) string { return filepath.Join(dir, id) }, log)
	rng := "0-" + strconv.Itoa(len(wrapped)-1)
	tasks.EXPECT().Info(gomock.Any()).Return(types.TaskInfo{PieceSize: 16}, nil).Times(2)
	c.EXPECT().PieceDigest("bad", 0).Return(digest.Sum(digest.BLAKE3, []byte("other bytes")))
	c.EXPECT().PieceDigest("good", 0).Return(digest.Sum(digest.BLAKE3, wrapped))
	dropped := make(chan string, 2)
	gc.EXPECT().GCTask("bad", true).Do(func(id string, _ bool) { dropped <- id })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	m.CacheDamaged("good", rng)
	m.CacheDamaged("bad", rng)
	select {
	case id := <-dropped:
		if id != "bad" {
			t.Fatalf("dropped %s", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the damaged cache was not dropped")
	}
}
