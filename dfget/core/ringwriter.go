package core

import (
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/pkg/fileio"
)

// ringWriter copies verified pieces into the slots of the peer server's
// stream ring (a memfd opened through /proc). A slot's first piece goes in
// by pwrite, which allocates its pages; later ones are copied through a
// mapping of the ring, which costs about half of a pwrite into the memfd
// once the pages exist (faulting fresh pages in through the mapping would
// cost more than the pwrite). Without a mapping every piece is a pwrite.
type ringWriter struct {
	f    *os.File
	mem  []byte // nil without a mapping
	size int    // bytes per slot
	// filled marks the slots written once; slots are handed out by the
	// server, so two pushes may touch the same slot only one after the
	// other, from different goroutines.
	filled []atomic.Bool
}

// newRingWriter maps f, slots pieces of size bytes, when the file is that
// large (a ring cut short would fault a copy past its end).
func newRingWriter(f *os.File, slots int, size int32) *ringWriter {
	w := &ringWriter{f: f, size: int(size)}
	n := int64(slots) * int64(size)
	st, err := f.Stat()
	if slots <= 0 || size <= 0 || err != nil || st.Size() < n || n > 1<<30 {
		return w
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err == nil {
		w.mem, w.filled = mem, make([]atomic.Bool, slots)
	}
	return w
}

// write puts b into slot.
func (w *ringWriter) write(slot int, b []byte) error {
	if len(b) > w.size || slot < 0 {
		return fmt.Errorf("piece of %d bytes for ring slot %d of %d bytes", len(b), slot, w.size)
	}
	if w.mem != nil && slot < len(w.filled) && w.filled[slot].Load() {
		copy(w.mem[slot*w.size:], b)
		return nil
	}
	if _, err := fileio.WriteAt(w.f, b, int64(slot)*int64(w.size)); err != nil {
		return fmt.Errorf("write ring slot %d: %w", slot, err)
	}
	if w.mem != nil && slot < len(w.filled) {
		w.filled[slot].Store(true)
	}
	return nil
}

// close unmaps the ring and closes its file.
func (w *ringWriter) close() {
	if w.mem != nil {
		_ = unix.Munmap(w.mem)
		w.mem = nil
	}
	_ = w.f.Close()
}
