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
func Reserve(f *os.File, n int64, keepSize bool) error {
	if n <= 0 {
		return nil
	}
	mode := uint32(0)
	if keepSize {
		mode = unix.FALLOC_FL_KEEP_SIZE
	}
	err := unix.Fallocate(int(f.Fd()), mode, 0, n)
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("reserve %d bytes for %s: %w", n, f.Name(), err)
	}
	return nil
}
