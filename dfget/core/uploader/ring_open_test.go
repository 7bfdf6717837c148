package uploader

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// procPath is the /proc path of this process's fd, as a server names its
// ring.
func procPath(fd int) string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd) }

// memfd makes a memfd of size bytes named name with seals added (0: none).
func memfd(t *testing.T, name string, size int64, seals int) int {
	t.Helper()
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		imagetest.Unavailable(t, "memfd: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	if seals != 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

// OpenRing takes the server's ring as it names it.
func TestOpenRingTakesServersRing(t *testing.T) {
	r, err := newRing(4, testPieceSize)
	if err != nil {
		imagetest.Unavailable(t, "no ring here: %v", err)
	}
	defer r.close()
	f, err := OpenRing(r.path, 4, testPieceSize)
	if err != nil {
		t.Fatalf("the server's own ring refused: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("piece"), 3*testPieceSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.slot(3, 5), []byte("piece")) {
		t.Errorf("slot 3 holds %q", r.slot(3, 5))
	}
	if _, err := f.WriteAt([]byte("x"), 4*testPieceSize); err == nil {
		t.Error("the ring grew past its slots")
	}
}

// Whatever answers on the server's port names the ring: OpenRing opens
// for writing nothing but a ring of this user, of the size announced.
func TestOpenRingRefusesOtherFiles(t *testing.T) {
	const slots, size = 2, 4096
	victim := filepath.Join(t.TempDir(), "authorized_keys")
	orig := bytes.Repeat([]byte("k"), slots*size)
	if err := os.WriteFile(victim, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	vf, err := os.Open(victim)
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	cases := map[string]string{
		"a file's own path":              victim,
		"a file through /proc":           procPath(int(vf.Fd())),
		"a memfd without seals":          procPath(memfd(t, ringName, slots*size, 0)),
		"a memfd of another name":        procPath(memfd(t, "other", slots*size, ringSeals)),
		"a ring of another size":         procPath(memfd(t, ringName, slots*size+size, ringSeals)),
		"a memfd with only some seals":   procPath(memfd(t, ringName, slots*size, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW)),
		"a path with /proc in its midst": "/proc/1/fd/../../self/fd/0",
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		// tmpfs files answer F_GET_SEALS too.
		shm, err := os.CreateTemp("/dev/shm", "ring-test")
		if err == nil {
			defer os.Remove(shm.Name())
			defer shm.Close()
			_ = shm.Truncate(slots * size)
			cases["a tmpfs file through /proc"] = procPath(int(shm.Fd()))
		}
	}
	for name, path := range cases {
		if f, err := OpenRing(path, slots, size); err == nil {
			f.Close()
			t.Errorf("%s (%s): opened as a ring", name, path)
		}
	}
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, orig) {
		t.Error("the victim file changed")
	}
	if f, err := OpenRing(procPath(memfd(t, ringName, slots*size, ringSeals)), slots, size); err != nil {
		t.Errorf("a ring: %v", err)
	} else {
		f.Close()
	}
}
