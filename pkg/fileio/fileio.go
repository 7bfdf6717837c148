// Package fileio writes large buffers into files in bounded chunks and
// reserves a file's blocks before they are written.
//
// Linux sizes new page-cache folios from the length of the write that
// creates them: one 4 MiB pwrite gets 2 MiB folios. On a virtual machine
// that hands free memory back to its host (virtio-balloon free page
// reporting works on 2 MiB blocks), every such folio is a block the host
// must fault in again, page by page, while smaller folios come from memory
// the guest still holds. Writing in chunks of 256 KiB or less keeps the
// page-cache copy off that path at the price of a few more syscalls;
// docs/benchmarks.md ("Where the time goes") has the measurements.
package fileio

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Chunk is the largest single write issued: well below the size at which
// the cost above rose in the measurements, and large enough to keep the
// syscalls few.
const Chunk = 256 << 10

// WriteAt writes b at off in writes of at most Chunk bytes. It returns the
// bytes written and the first error, like io.WriterAt.
func WriteAt(w io.WriterAt, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		end := min(done+Chunk, len(b))
		n, err := w.WriteAt(b[done:end], off+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// Reserve allocates the blocks of [0, n) of f before they are written, so a
// full disk shows before the first byte instead of in the middle, and the
// writes that follow skip the file system's block allocation (on ext4, 1 GiB
// in 256 KiB writes: 0.13-0.15 CPU-s reserved, 0.20-0.24 not). keepSize
// leaves the file's length to the writes, so a reader of the length never
// takes reserved blocks for written ones. Only a full file system or quota
// is an error (wrapping unix.ENOSPC or unix.EDQUOT): one that cannot
// reserve (no fallocate) is written as before.
//
// A length the file system has no room for is refused before any block is
// taken (the length comes from a source's Content-Length, which anyone can
// set). A reservation that fails anyway gives back what it took: on ext4 a
// failed fallocate keeps the blocks it allocated, so the disk would stay
// full until the file is removed.
func Reserve(f *os.File, n int64, keepSize bool) error {
	if n <= 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil // not a file to reserve in: written as before
	}
	if err := checkRoom(f, n, st.Blocks*512); err != nil {
		return err
	}
	return allocate(f, n, keepSize, st.Size)
}

// checkRoom refuses n bytes for f, which holds allocated bytes already,
// when its file system has less free space than they lack. Free space is
// what unprivileged users may take: a root process could also take the
// blocks reserved for root, which are left to the system. A file system
// that reports no size at all is not checked.
func checkRoom(f *os.File, n, allocated int64) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil || fs.Blocks == 0 {
		return nil
	}
	need := n - allocated
	free := int64(fs.Bavail) * int64(fs.Bsize)
	if need > free {
		return fmt.Errorf("reserve %d bytes for %s: %d more bytes needed, %d free on its file system: %w",
			n, f.Name(), need, free, unix.ENOSPC)
	}
	return nil
}

// allocate reserves [0, n) of f, whose length is size. On a full file
// system or quota it truncates f back to size: that frees every block past
// the length, those of this reservation included (and any an earlier one
// left). Punching a hole would not do on ext4, which punches only up to
// the file's length, while keepSize blocks lie past it; without keepSize,
// ext4 also leaves the length where the failed allocation stopped.
func allocate(f *os.File, n int64, keepSize bool, size int64) error {
	mode := uint32(0)
	if keepSize {
		mode = unix.FALLOC_FL_KEEP_SIZE
	}
	err := unix.Fallocate(int(f.Fd()), mode, 0, n)
	if !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.EDQUOT) {
		return nil
	}
	err = fmt.Errorf("reserve %d bytes for %s: %w", n, f.Name(), err)
	if terr := f.Truncate(size); terr != nil {
		return fmt.Errorf("%w (giving the blocks back: %v)", err, terr)
	}
	return err
}
