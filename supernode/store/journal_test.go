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

func rec(num, n int) PieceRecord {
	return PieceRecord{Num: num, Len: n, Blake3: digest.Sum(digest.BLAKE3, []byte{byte(num), byte(n)})}
}

// A journal reads back what was written, under its key only; Remove and
// RemoveJournal delete it.
func TestJournalRoundTrip(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const id = "abcdef"
	if _, err := s.ReadJournal(id, "k1", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no journal: %v", err)
	}
	j, err := s.CreateJournal(id, "k1", []PieceRecord{rec(0, 100), rec(1, 100)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []PieceRecord{rec(3, 100), rec(2, 100)} {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Append(PieceRecord{Num: 4, Len: 1}); err == nil {
		t.Fatal("a record without a BLAKE3 digest was appended")
	}
	if err := j.Append(rec(5, 1)); err == nil {
		t.Fatal("a journal took a record after a failed one")
	}
	j.Close()
	got, err := s.ReadJournal(id, "k1", 10)
	want := []PieceRecord{rec(0, 100), rec(1, 100), rec(3, 100), rec(2, 100)}
	if err != nil || len(got) != len(want) {
		t.Fatalf("read %v %v", got, err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := s.ReadJournal(id, "k2", 10); err == nil {
		t.Fatal("journal read under another key")
	}
	// Started afresh: the records of the fetch before are gone.
	j, err = s.CreateJournal(id, "k2", nil)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if got, err := s.ReadJournal(id, "k2", 10); err != nil || len(got) != 0 {
		t.Fatalf("fresh journal: %v %v", got, err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.journalPath(id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("journal after Remove: %v", err)
	}
	if err := s.RemoveJournal(id); err != nil {
		t.Fatalf("RemoveJournal of none: %v", err)
	}
}

// Records are parsed strictly: the first torn, malformed, non-canonical,
// out-of-range or repeated one ends the journal.
func TestJournalStrictParse(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const id = "abcdef"
	head := journalMagic + " k\n"
	r0, r1 := string(rec(0, 100).line()), string(rec(1, 100).line())
	for name, tc := range map[string]struct {
		body string
		want int // records read
	}{
		"whole":             {head + r0 + r1, 2},
		"torn last":         {head + r0 + r1[:len(r1)-1], 1},
		"torn mid-digest":   {head + r0 + r1[:20], 1},
		"garbage between":   {head + r0 + "\x00\x00\x00\n" + r1, 1},
		"zeros":             {head + r0 + strings.Repeat("\x00", 4096), 1},
		"leading zero":      {head + r0 + "0" + r1, 1},
		"plus sign":         {head + r0 + "+" + r1, 1},
		"upper-case hex":    {head + r0 + strings.ToUpper(r1[:len(r1)-65]) + strings.ToUpper(r1[len(r1)-65:len(r1)-1]) + "\n", 1},
		"extra field":       {head + r0 + strings.TrimSuffix(r1, "\n") + " x\n", 1},
		"two spaces":        {head + r0 + strings.Replace(r1, " ", "  ", 1), 1},
		"zero length":       {head + r0 + "1 0 " + rec(1, 1).Blake3.String() + "\n", 1},
		"sha256 digest":     {head + r0 + "1 100 " + digest.Sum(digest.SHA256, nil).String() + "\n", 1},
		"duplicate":         {head + r0 + r0 + r1, 1},
		"past the end":      {head + r0 + string(rec(10, 100).line()) + r1, 1},
		"overlong line":     {head + r0 + strings.Repeat("1", 4*maxJournalLine) + "\n" + r1, 1},
		"header only":       {head, 0},
		"crlf":              {head + r0 + strings.TrimSuffix(r1, "\n") + "\r\n", 1},
		"negative":          {head + r0 + "-" + r1, 1},
		"windows of header": {journalMagic + " k\r\n" + r0, -1},
		"no header":         {r0 + r1, -1},
		"torn header":       {journalMagic + " k", -1},
		"empty":             {"", -1},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Dir(s.DataPath(id)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.journalPath(id), []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := s.ReadJournal(id, "k", 10)
			if tc.want < 0 {
				if err == nil {
					t.Fatalf("read %v from a journal without its header", got)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("read %d records (%v), want %d", len(got), err, tc.want)
			}
		})
	}
}
