package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
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
	if avail, err := s.AvailSpace(); err != nil || avail <= 0 {
		t.Fatalf("avail %d %v", avail, err)
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
