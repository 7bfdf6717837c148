package uploader

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// A lock held elsewhere (a dfget stopped with Ctrl-Z) is waited for a
// bounded time, then refused with its own error.
func TestLockDirWaitIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockDir(context.Background(), path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	done := make(chan error, 1)
	go func() {
		// Another open file description: flock conflicts as with another
		// process.
		u, err := lockDir(context.Background(), path, 50*time.Millisecond)
		if err == nil {
			u()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errLockBusy) {
			t.Fatalf("err = %v, want the lock refused as busy", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after 5s for a lock held elsewhere, bound 50ms")
	}
}
