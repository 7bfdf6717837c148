// Package fileio writes large buffers into files in bounded chunks.
//
// Linux sizes new page-cache folios from the length of the write that
// creates them: one 4 MiB pwrite gets 2 MiB folios. On a virtual machine
// that hands free memory back to its host (virtio-balloon free page
// reporting works on 2 MiB blocks), every such folio is a block the host
// must fault in again, page by page. Measured on the project's 2-core VM,
// writing 1 GiB into the page cache cost 3.7 s of system time in 4 MiB
// writes and 0.34 s in 256 KiB writes: smaller folios come from memory the
// guest still holds. 256 KiB keeps the syscalls few (4096 per GiB).
package fileio

import "io"

// Chunk is the largest single write issued (256 KiB: at and below it the
// cost above was flat, at 1 MiB it had tripled).
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
