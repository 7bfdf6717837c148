package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// smallDisk mounts a tmpfs of sizeMiB at a fresh directory (root only; the
// test is skipped otherwise, and fails in CI) and fills all but freeMiB of
// it with a filler file, which free removes.
func smallDisk(t *testing.T, sizeMiB, freeMiB int) (dir string, free func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		imagetest.Unavailable(t, "mounting a tmpfs needs root")
	}
	dir = t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(sizeMiB)+"m", "tmpfs", dir).CombinedOutput(); err != nil {
		imagetest.Unavailable(t, "mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", dir, err, out)
		}
	})
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < sizeMiB-freeMiB; i++ {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	return dir, func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
}

// The supernode's disk has no room for the file: the client fails cleanly
// (--notbs: exit 80, no output), the cache entry is not marked finished,
// and after space is freed the next download is correct. A source that
// says its length fails at the CDN's block reservation, before the first
// piece; a chunked one when a piece write hits the full disk.
func TestFaultSupernodeDiskFull(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		name := map[bool]string{false: "known length", true: "chunked"}[chunked]
		t.Run(name, func(t *testing.T) { supernodeDiskFull(t, chunked) })
	}
}

func supernodeDiskFull(t *testing.T, chunked bool) {
	disk, free := smallDisk(t, 40, 12)
	o := newOrigin(t)
	data := randomData(24<<20, 121)
	url := o.add("/full.bin", data)
	o.mu.Lock()
	o.chunked["/full.bin"] = chunked
	o.mu.Unlock()
	home := filepath.Join(disk, "sn")
	sn := startSupernode(t, home)
	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()
	r := p.run(sn, "-u", url, "-o", filepath.Join(out, "first"), "--notbs", "--timeout", "60s")
	t.Logf("disk full: exit %d in %v: %s", r.code, r.duration.Round(time.Millisecond), lastLine(r.stdout))
	if r.code != 80 || !strings.Contains(r.stdout, "download FAIL") {
		t.Fatalf("supernode disk full: exit %d, want 80\n%s", r.code, r.stdout)
	}
	noFile(t, filepath.Join(out, "first"))
	if !sn.LogContains("no space left on device") {
		t.Error("the supernode log does not name the full disk")
	}
	switch reserved := sn.LogContains("reserve "); {
	case chunked && reserved:
		t.Error("a source of unknown length failed at a block reservation it cannot make")
	case !chunked && !reserved:
		t.Error("a source of known length did not fail at the CDN's block reservation")
	}
	metas, _ := filepath.Glob(filepath.Join(home, "repo", "download", "*", "*.meta"))
	for _, m := range metas {
		b, _ := os.ReadFile(m)
		var meta struct{ Finish, Success bool }
		if json.Unmarshal(b, &meta) == nil && meta.Success {
			t.Errorf("%s claims success after a full disk: %s", m, b)
		}
	}
	free()
	r = p.run(sn, "-u", url, "-o", filepath.Join(out, "second"), "--notbs", "--timeout", "60s")
	if r.code != 0 {
		t.Fatalf("after freeing space: exit %d\n%s", r.code, r.stdout)
	}
	fileEquals(t, filepath.Join(out, "second"), data)
	// A restarted supernode trusts only what is whole.
	if err := sn.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	sn2 := startSupernode(t, home)
	r = newDfgetPeer(t, "127.0.0.3").run(sn2, "-u", url, "-o", filepath.Join(out, "third"), "--notbs")
	if r.code != 0 {
		t.Fatalf("after restart: exit %d\n%s", r.code, r.stdout)
	}
	fileEquals(t, filepath.Join(out, "third"), data)
}

// The peer's disk (work home and output directory) is full: dfget fails
// at the start with reason 4 and a clear message, leaves no output and no
// partial service file; after space is freed it downloads correctly.
func TestFaultPeerDiskFull(t *testing.T) {
	disk, free := smallDisk(t, 24, 8)
	o := newOrigin(t)
	data := randomData(16<<20, 122)
	url := o.add("/peerfull.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := &dfgetPeer{t: t, ip: "127.0.0.2", home: filepath.Join(disk, "home")}
	t.Cleanup(p.killServer)
	dst := filepath.Join(disk, "out")
	r := p.run(sn, "-u", url, "-o", dst, "--notbs", "--timeout", "60s")
	t.Logf("peer disk full: exit %d in %v: %s", r.code, r.duration.Round(time.Millisecond), lastLine(r.stdout))
	if r.code != 80 || !strings.Contains(r.stdout, "reason:1004") {
		t.Fatalf("peer disk full: exit %d, want 80 with reason 1004 (no space, --notbs)\n%s", r.code, r.stdout)
	}
	noFile(t, dst)
	if left, _ := filepath.Glob(filepath.Join(p.home, "data", "*.service")); len(left) != 0 {
		t.Errorf("partial service files left: %v", left)
	}
	// Without --notbs the fallback to the source hits the same full disk.
	r = p.run(sn, "-u", url, "-o", dst, "--timeout", "60s")
	if r.code != 80 {
		t.Errorf("fallback on a full disk: exit %d\n%s", r.code, r.stdout)
	}
	noFile(t, dst)
	free()
	if r := p.run(sn, "-u", url, "-o", dst, "--notbs"); r.code != 0 {
		t.Fatalf("after freeing space: exit %d\n%s", r.code, r.stdout)
	}
	fileEquals(t, dst, data)
}
