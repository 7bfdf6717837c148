package core

import (
	"bytes"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// A slot's pieces, by pwrite and then through the mapping, are what a
// reader of the ring file sees; a piece larger than a slot is refused.
func TestRingWriterSlots(t *testing.T) {
	fd, err := unix.MemfdCreate("ring-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Skipf("no memfd here: %v", err)
	}
	const slots, size = 3, 4096
	if err := unix.Ftruncate(fd, slots*size); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "ring")
	w := newRingWriter(f, slots, size)
	defer w.close()
	if w.mem == nil {
		t.Fatal("ring not mapped")
	}
	read := func(slot, n int) []byte {
		b := make([]byte, n)
		if _, err := f.ReadAt(b, int64(slot*size)); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for lap, fill := range []byte{'a', 'b', 'c'} {
		for slot := range slots {
			p := bytes.Repeat([]byte{fill + byte(slot)}, size-lap*100)
			if err := w.write(slot, p); err != nil {
				t.Fatal(err)
			}
			if got := read(slot, len(p)); !bytes.Equal(got, p) {
				t.Fatalf("lap %d slot %d: ring holds %q..., want %q...", lap, slot, got[:4], p[:4])
			}
		}
	}
	if err := w.write(0, make([]byte, size+1)); err == nil {
		t.Fatal("a piece larger than a slot was written")
	}
}

// A ring file shorter than its slots is not mapped (a copy would fault
// past its end): pieces go by pwrite.
func TestRingWriterShortFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "ring")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	w := newRingWriter(f, 3, 4096)
	defer w.close()
	if w.mem != nil {
		t.Fatal("a short ring was mapped")
	}
	if err := w.write(2, []byte("piece")); err != nil {
		t.Fatal(err)
	}
}
