package logfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenRotatesAndKeepsBackups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "app.log")
	w, err := Open(path, Rotation{MaxSize: 1, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	// 5 MB through a 1 MB limit: the file rotates four times, and only two
	// rotated files may stay.
	for range 5 << 10 {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Old backups are removed by a background goroutine of the library:
	// give it a moment.
	var backups int
	var ents []os.DirEntry
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if ents, err = os.ReadDir(filepath.Dir(path)); err != nil {
			t.Fatal(err)
		}
		backups = 0
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "app-") {
				backups++
			}
		}
		if backups == 2 || time.Now().After(deadline) {
			break
		}
	}
	if backups != 2 {
		t.Errorf("%d rotated files, want 2 (files: %v)", backups, ents)
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MB limit", e.Name(), info.Size())
		}
	}
}

func TestOpenFailsEarly(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(blocker, "app.log"), Rotation{}); err == nil {
		t.Fatal("a log path under a regular file opened")
	}
	if _, err := Open(filepath.Join(dir, "a.log"), Rotation{MaxSize: -1}); err == nil || !strings.Contains(err.Error(), "maxSize") {
		t.Fatalf("negative maxSize: err %v", err)
	}
}
