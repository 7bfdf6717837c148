// Package fileio writes large buffers into files in bounded chunks.
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

import "io"

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
