package fileio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// chunkLog records each write's offset and length.
type chunkLog struct {
	f      *os.File
	writes [][2]int64
	failAt int64 // fail the write starting here (-1: never)
}

func (c *chunkLog) WriteAt(b []byte, off int64) (int, error) {
	c.writes = append(c.writes, [2]int64{off, int64(len(b))})
	if off == c.failAt {
		return 10, errors.New("disk full")
	}
	return c.f.WriteAt(b, off)
}

func TestWriteAtChunks(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 3*Chunk+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	c := &chunkLog{f: f, failAt: -1}
	const base = 5
	n, err := WriteAt(c, data, base)
	if err != nil || n != len(data) {
		t.Fatalf("WriteAt = %d, %v; want %d, nil", n, err, len(data))
	}
	want := [][2]int64{{base, Chunk}, {base + Chunk, Chunk}, {base + 2*Chunk, Chunk}, {base + 3*Chunk, 17}}
	if len(c.writes) != len(want) {
		t.Fatalf("writes %v, want %v", c.writes, want)
	}
	for i := range want {
		if c.writes[i] != want[i] {
			t.Fatalf("write %d = %v, want %v", i, c.writes[i], want[i])
		}
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, base); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file content differs (err %v)", err)
	}
}

func TestWriteAtStopsAtError(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &chunkLog{f: f, failAt: Chunk}
	n, err := WriteAt(c, make([]byte, 3*Chunk), 0)
	if err == nil || n != Chunk+10 {
		t.Fatalf("WriteAt = %d, %v; want %d and an error", n, err, Chunk+10)
	}
	if len(c.writes) != 2 {
		t.Fatalf("%d writes after the error, want 2", len(c.writes))
	}
}

// Reserve allocates blocks; with keepSize the length stays what was
// written, without it the file takes the reserved length.
func TestReserve(t *testing.T) {
	const n = 8 << 20
	for _, keep := range []bool{true, false} {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte("head")); err != nil {
			t.Fatal(err)
		}
		if err := Reserve(f, n, keep); err != nil {
			t.Fatalf("keepSize=%v: %v", keep, err)
		}
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		wantSize := int64(n)
		if keep {
			wantSize = 4
		}
		if fi.Size() != wantSize {
			t.Errorf("keepSize=%v: size %d, want %d", keep, fi.Size(), wantSize)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			t.Fatal("no Stat_t")
		}
		// Blocks are 512 bytes in st_blocks. A file system without
		// fallocate reserves nothing and is not an error.
		if st.Blocks*512 < n {
			t.Logf("keepSize=%v: %d bytes allocated; this file system does not reserve", keep, st.Blocks*512)
		}
	}
	if err := Reserve(nil, 0, true); err != nil {
		t.Errorf("Reserve of 0 bytes: %v", err)
	}
}
