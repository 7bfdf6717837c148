package uploader

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ring is the piece memory of a stream cache, shared with the streaming
// dfget. It is a memfd the server maps; the dfget opens it through
// /proc/<server pid>/fd/<fd> and writes each verified piece into a slot the
// server reserved for it. A pushed piece would cross loopback TCP and be
// copied twice on the stream's hot path, into freshly allocated buffers;
// through the ring it is copied once, into pages reused lap after lap, so
// a cached stream costs little more than one without a cache (figures in
// docs/benchmarks.md). The stream cache's lock guards it.
type ring struct {
	fd   int
	mem  []byte
	size int // bytes per slot: the piece size
	// busy marks slots holding a reserved or cached piece, or an evicted
	// one still being sent.
	busy []bool
	path string
}

// maxRingBytes bounds a ring's address space; a bigger window falls back
// to HTTP pushes.
const maxRingBytes = 1 << 30

// newRing creates a ring of slots pieces of size bytes.
func newRing(slots, size int) (*ring, error) {
	if slots <= 0 || size <= 0 || int64(slots)*int64(size) > maxRingBytes {
		return nil, fmt.Errorf("ring of %d x %d bytes: out of range", slots, size)
	}
	fd, err := unix.MemfdCreate("damselfly-stream", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	n := slots * size
	if err := unix.Ftruncate(fd, int64(n)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("size memfd: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("map memfd: %w", err)
	}
	return &ring{fd: fd, mem: mem, size: size, busy: make([]bool, slots),
		path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd)}, nil
}

// take marks a free slot busy and returns it, or -1 if every slot is busy.
func (r *ring) take() int {
	for i, b := range r.busy {
		if !b {
			r.busy[i] = true
			return i
		}
	}
	return -1
}

// release makes slot i free again.
func (r *ring) release(i int) { r.busy[i] = false }

// slot returns the first n bytes of slot i.
func (r *ring) slot(i, n int) []byte { return r.mem[i*r.size : i*r.size+n : i*r.size+n] }

// close unmaps and closes the ring; nothing may read its slots after.
func (r *ring) close() {
	_ = unix.Munmap(r.mem)
	_ = unix.Close(r.fd)
	r.mem = nil
}
