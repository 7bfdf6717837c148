package uploader

import (
	"errors"
	"fmt"
	"os"
	"regexp"

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

// ringName is the name of every ring's memfd, and ringSeals its seals: its
// size is fixed, and so are the seals. No file but such a memfd has them,
// which is how a dfget tells a ring from a file it is told to write into
// (OpenRing).
const (
	ringName  = "damselfly-stream"
	ringSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW
)

// maxRingBytes bounds a ring's address space; a bigger window falls back
// to HTTP pushes.
const maxRingBytes = 1 << 30

// newRing creates a ring of slots pieces of size bytes.
func newRing(slots, size int) (*ring, error) {
	if slots <= 0 || size <= 0 || int64(slots)*int64(size) > maxRingBytes {
		return nil, fmt.Errorf("ring of %d x %d bytes: out of range", slots, size)
	}
	fd, err := unix.MemfdCreate(ringName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	n := slots * size
	if err := unix.Ftruncate(fd, int64(n)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("size memfd: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, ringSeals); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("seal memfd: %w", err)
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

// ringPath is the form of a ring's path: the server's fd of the memfd.
var ringPath = regexp.MustCompile(`^/proc/[1-9][0-9]*/fd/[0-9]+$`)

// OpenRing opens, for the streaming dfget to write pieces into, the ring a
// peer server named at stream registration: path, of slots slots of
// slotSize bytes. Path and count come from whatever answers on the
// server's port, not necessarily the server, so nothing is opened but a
// /proc/<pid>/fd/<n> path, and the file must then prove to be such a ring:
// a memfd of this user with the ring's name, seals and size. Else it is
// closed unwritten, and the error says why. (The path is the server's fd
// through /proc, itself a symlink: O_NOFOLLOW would refuse every ring.)
func OpenRing(path string, slots, slotSize int) (*os.File, error) {
	if !ringPath.MatchString(path) {
		return nil, fmt.Errorf("ring path %q is not a /proc/<pid>/fd/<n> path", path)
	}
	if slots <= 0 || slotSize <= 0 || int64(slots)*int64(slotSize) > maxRingBytes {
		return nil, fmt.Errorf("ring of %d x %d bytes: out of range", slots, slotSize)
	}
	size := int64(slots) * int64(slotSize)
	// Look before opening: opening a device or a FIFO can act on it.
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("ring %s: %w", path, err)
	} else if !st.Mode().IsRegular() || st.Size() != size {
		return nil, fmt.Errorf("ring %s: not a regular file of %d bytes", path, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("ring %s: %w", path, err)
	}
	if err := checkRing(int(f.Fd()), size); err != nil {
		f.Close()
		return nil, fmt.Errorf("ring %s: %w", path, err)
	}
	return f, nil
}

// checkRing checks that fd is a ring of size bytes.
func checkRing(fd int, size int64) error {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return fmt.Errorf("not a memfd: %w", err)
	}
	if seals != ringSeals {
		return fmt.Errorf("seals %#x, a ring has %#x", seals, ringSeals)
	}
	name, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if name != "/memfd:"+ringName+" (deleted)" {
		return fmt.Errorf("named %q, not a ring", name)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != size {
		return fmt.Errorf("not a file of %d bytes", size)
	}
	if st.Uid != uint32(os.Geteuid()) {
		return errors.New("owned by another user")
	}
	return nil
}
