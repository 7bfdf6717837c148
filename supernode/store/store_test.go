package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

func TestSidecarsAndLayout(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := "abcdef"
	if RelPath(id) != "/download/abc/abcdef" || s.DataPath(id) != filepath.Join(s.Root(), "download", "abc", id) {
		t.Fatalf("layout %s %s", RelPath(id), s.DataPath(id))
	}
	if _, err := s.ReadMeta(id); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing meta: %v", err)
	}
	m := &Meta{TaskID: id, URL: "http://o/f", PieceSize: 4 << 20, HTTPFileLen: 10, Finish: true, Success: true, RealMd5: "m"}
	if err := s.WriteMeta(m); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadMeta(id)
	if err != nil || *got != *m {
		t.Fatalf("meta %+v %v", got, err)
	}
	if err := s.WriteMd5(id, []string{"a:1", "b:2"}, "m"); err != nil {
		t.Fatal(err)
	}
	if md5s, err := s.ReadMd5(id, "m"); err != nil || len(md5s) != 2 || md5s[1] != "b:2" {
		t.Fatalf("md5s %v %v", md5s, err)
	}
	if _, err := s.ReadMd5(id, "other"); err == nil {
		t.Fatal("wrong file md5 accepted")
	}
	b, _ := os.ReadFile(s.DataPath(id) + ".md5")
	b[0] = 'x'
	_ = os.WriteFile(s.DataPath(id)+".md5", b, 0o644)
	if _, err := s.ReadMd5(id, "m"); err == nil {
		t.Fatal("tampered .md5 accepted")
	}
	f, err := s.OpenData(id, true)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("12345"))
	f.Close()
	if s.DataSize(id) != 5 {
		t.Fatal("size")
	}
	if ids, err := s.TaskIDs(); err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("ids %v %v", ids, err)
	}
	avail, err := s.AvailSpace()
	if err != nil || avail <= 0 {
		t.Fatalf("avail %d %v", avail, err)
	}
	if size, err := s.DiskSize(); err != nil || size < avail {
		t.Fatalf("disk size %d (avail %d) %v", size, avail, err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(s.DataPath(id))); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("empty bucket kept")
	}
	for _, bad := range []string{"", "../x", "a/b", "x.meta"} {
		if _, err := s.OpenData(bad, false); err == nil {
			t.Errorf("id %q accepted", bad)
		}
	}
}

// URL credentials never reach the .meta; the real URL is still recognised.
func TestMetaMasksURLCredentials(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := "http://user:s3cret@o/f?a=1"
	m := &Meta{TaskID: "abcdef", URL: real, Finish: true}
	if err := s.WriteMeta(m); err != nil {
		t.Fatal(err)
	}
	if m.URL != real {
		t.Fatalf("WriteMeta changed its argument: %q", m.URL)
	}
	b, _ := os.ReadFile(s.DataPath("abcdef") + ".meta")
	if strings.Contains(string(b), "s3cret") || !strings.Contains(string(b), "user:xxxxx@o") {
		t.Fatalf(".meta holds %s", b)
	}
	got, err := s.ReadMeta("abcdef")
	if err != nil || !got.SameURL(real) || got.SameURL("http://user:other@o/f?a=1") || got.SameURL("http://user:xxxxx@o/f?a=1") {
		t.Fatalf("SameURL on %+v (%v)", got, err)
	}
	// Written back as read (an update of another field): still recognised.
	if err := s.WriteMeta(got); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.ReadMeta("abcdef"); !again.SameURL(real) {
		t.Fatalf("after a rewrite: %+v", again)
	}
	// A meta without credentials (or from before) compares plainly.
	plain := &Meta{URL: "http://o/f"}
	if !plain.SameURL("http://o/f") || plain.SameURL("http://o/g") {
		t.Fatal("plain SameURL")
	}
}

// The .blake3 sidecar round-trips its digests, is tied to the file md5,
// and is absent (fs.ErrNotExist) for a cache written before BLAKE3, whose
// .md5 sidecar alone still reads.
func TestBlake3Sidecar(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := "abcdef"
	if err := s.WriteMd5(id, []string{"a:1", "b:2"}, "m"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBlake3(id, "m"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old-format cache: %v, want not exist", err)
	}
	if md5s, err := s.ReadMd5(id, "m"); err != nil || len(md5s) != 2 {
		t.Fatalf("old-format .md5: %v %v", md5s, err)
	}
	ds := []digest.Digest{digest.Sum(digest.BLAKE3, []byte("a")), digest.Sum(digest.BLAKE3, []byte("b"))}
	if err := s.WriteBlake3(id, ds, "m"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadBlake3(id, "m")
	if err != nil || len(got) != 2 || got[0] != ds[0] || got[1] != ds[1] {
		t.Fatalf("blake3s %v %v", got, err)
	}
	if _, err := s.ReadBlake3(id, "other"); err == nil {
		t.Fatal("wrong file md5 accepted")
	}
	if err := s.WriteBlake3(id, []digest.Digest{ds[0], {}}, "m"); err == nil {
		t.Fatal("a zero digest was written")
	}
}

// A .blake3 sidecar whose lines are not BLAKE3 digests is refused even
// when its checksum is right.
func TestBlake3SidecarRefusesOtherLines(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := "abcdef"
	md5d := digest.Sum(digest.MD5, []byte("a")).String()
	for _, line := range []string{"a:1", "", md5d, "blake3:00"} {
		if err := writeSidecar(s.blake3Path(id), []string{line}, "m"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReadBlake3(id, "m"); err == nil {
			t.Fatalf("line %q accepted", line)
		}
	}
}

// A Remove that fails part way keeps the .meta, by which disk GC finds the
// task, so the next Remove finishes it; the data, sidecars and journal
// without a .meta would be listed by nothing.
func TestRemoveKeepsMetaUntilTheRestIsGone(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := "abcdef"
	if err := s.WriteMeta(&Meta{TaskID: id, URL: "http://o/f"}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteMd5(id, []string{"a:1"}, "m"); err != nil {
		t.Fatal(err)
	}
	// A data "file" that cannot be removed: a directory with a file in it.
	if err := os.MkdirAll(filepath.Join(s.DataPath(id), "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err == nil {
		t.Fatal("a Remove that left the data reported no error")
	}
	if ids, err := s.TaskIDs(); err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("after a failed Remove, disk GC lists %v (%v), want [%s]", ids, err, id)
	}
	if err := os.RemoveAll(s.DataPath(id)); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(s.DataPath(id))); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("files left after the second Remove")
	}
}

// Opening a repo sweeps what no GC would remove: temporary files of
// atomic writes a crash cut short, and a task's data, sidecars and
// journal without its .meta. A task with a .meta, and files the store did
// not write, stay.
func TestNewSweepsLeftovers(t *testing.T) {
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	kept, gone := "abc111", "abc222"
	if err := s.WriteMeta(&Meta{TaskID: kept, URL: "http://o/f"}); err != nil {
		t.Fatal(err)
	}
	bucket := filepath.Dir(s.DataPath(kept))
	var keep, sweep []string
	for _, ext := range []string{"", ".md5", ".blake3", ".journal"} {
		keep = append(keep, s.DataPath(kept)+ext)
		sweep = append(sweep, s.DataPath(gone)+ext)
	}
	keep = append(keep, s.DataPath(kept)+".meta", filepath.Join(bucket, "notes.txt"), filepath.Join(root, DownloadDir, "zz", "abc333"))
	sweep = append(sweep, filepath.Join(bucket, ".tmp-"+kept+".meta-12345"), filepath.Join(root, DownloadDir, "def", ".tmp-def444.md5-1"))
	for _, p := range append(append([]string(nil), keep...), sweep...) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); err == nil {
			continue // the meta written above
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(root); err != nil {
		t.Fatal(err)
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	for _, p := range sweep {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s kept (%v)", strings.TrimPrefix(p, root), err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, DownloadDir, "def")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("emptied bucket kept")
	}
}
