// Package disktest gives a test a small file system of its own, to fill.
package disktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// Ext4 mounts a fresh ext4 file system of sizeMiB (its image a sparse file
// in a temporary directory) at a new directory, and unmounts it when the
// test ends. It is ext4 rather than a tmpfs because tmpfs gives back the
// pages of a failed fallocate by itself, and ext4, the usual cache disk,
// keeps them. It needs root, mkfs.ext4 (e2fsprogs) and a loop device:
// without them the test is skipped, except in CI (imagetest.Unavailable).
func Ext4(t testing.TB, sizeMiB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		imagetest.Unavailable(t, "mounting an ext4 image needs root")
	}
	mkfs := imagetest.NeedTool(t, "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMiB)<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v %s", img, err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		imagetest.Unavailable(t, "mount an ext4 image of %d MiB on a loop device: %v %s", sizeMiB, err, out)
	}
	// Registered after the TempDirs, so it runs before they are removed;
	// a lazy unmount still detaches a file system a leaked descriptor
	// keeps busy, and the loop device with it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", dir, err, out)
			if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v %s", dir, err, out)
			}
		}
	})
	return dir
}
