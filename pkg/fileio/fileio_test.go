package fileio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/test/disktest"
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

// freeSpace is the free space of dir's file system, as Reserve counts it.
func freeSpace(t *testing.T, dir string) int64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Bavail) * int64(fs.Bsize)
}

// allocated is the space f's blocks take.
func allocated(t *testing.T, f *os.File) (size, blocks int64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Size, st.Blocks * 512
}

// A length larger than the free space is refused before a block is taken,
// with an error that says what was missing and wraps ENOSPC.
func TestReserveRefusesMoreThanFree(t *testing.T) {
	dir := disktest.Ext4(t, 32)
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	free := freeSpace(t, dir)
	err = Reserve(f, 1<<30, true)
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "more bytes needed") {
		t.Fatalf("Reserve of 1 GiB on %d free bytes: %v; want the refusal, wrapping ENOSPC", free, err)
	}
	if _, blocks := allocated(t, f); blocks != 0 {
		t.Errorf("refused reservation took %d bytes", blocks)
	}
	if after := freeSpace(t, dir); after != free {
		t.Errorf("free space %d after the refusal, %d before", after, free)
	}
}

// A reservation the file system fails (here: more than it holds, asked
// past the check) gives back the blocks it took, and the length it had:
// ext4 keeps them otherwise, with and without keepSize.
func TestReserveFailureGivesBlocksBack(t *testing.T) {
	dir := disktest.Ext4(t, 32)
	for _, keep := range []bool{true, false} {
		f, err := os.Create(filepath.Join(dir, "f"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("head")); err != nil {
			t.Fatal(err)
		}
		free := freeSpace(t, dir)
		err = allocate(f, 1<<30, keep, 4)
		size, blocks := allocated(t, f)
		after := freeSpace(t, dir)
		f.Close()
		if err := os.Remove(f.Name()); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("keepSize=%v: allocate of 1 GiB on %d free bytes: %v, want ENOSPC", keep, free, err)
		}
		// The written head gets its block only now (delayed allocation).
		if size != 4 || blocks > 64<<10 || after < free-64<<10 {
			t.Errorf("keepSize=%v: after the failure the file has length %d and %d bytes allocated; %d bytes free, %d before",
				keep, size, blocks, after, free)
		}
	}
}
