package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

// PieceRecord is one line of a fill's journal: a piece written to the data
// file, its wrapped length and the BLAKE3 of the bytes written.
type PieceRecord struct {
	Num    int
	Len    int
	Blake3 digest.Digest
}

// journalMagic starts the journal's first line, followed by its key.
const journalMagic = "damselfly-cdn-journal-1"

// maxJournalLine bounds a line: a longer one is garbage and ends the
// journal, so a damaged file never costs more than this buffer.
const maxJournalLine = 512

func (s *Store) journalPath(taskID string) string { return s.DataPath(taskID) + ".journal" }

// Journal is the append-only record of the pieces a fill wrote, read back
// when a fetch resumes. It is not synced: a record that did not reach the
// disk only means its piece is fetched again.
type Journal struct {
	f   *os.File
	err error
}

// CreateJournal starts the task's journal afresh, atomically: the key of
// the fetch (it ties the journal to one meta) and recs, the pieces already
// kept. It returns the journal open for appending.
func (s *Store) CreateJournal(taskID, key string, recs []PieceRecord) (*Journal, error) {
	if err := validID(taskID); err != nil {
		return nil, err
	}
	if key == "" || strings.ContainsAny(key, " \n") {
		return nil, fmt.Errorf("journal of %s: invalid key %q", taskID, key)
	}
	var b bytes.Buffer
	b.WriteString(journalMagic + " " + key + "\n")
	for _, r := range recs {
		b.Write(r.line())
	}
	p := s.journalPath(taskID)
	if err := writeAtomic(p, b.Bytes()); err != nil {
		return nil, fmt.Errorf("journal of %s: %w", taskID, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("journal of %s: %w", taskID, err)
	}
	return &Journal{f: f}, nil
}

func (r PieceRecord) line() []byte {
	return []byte(strconv.Itoa(r.Num) + " " + strconv.Itoa(r.Len) + " " + r.Blake3.String() + "\n")
}

// Append records a written piece in one write. After a failed write the
// journal takes no more records: a torn line ends it for the reader, and
// records after it would be lost anyway. A nil journal records nothing.
func (j *Journal) Append(r PieceRecord) error {
	if j == nil {
		return nil
	}
	if j.err != nil {
		return j.err
	}
	if r.Blake3.Algorithm() != digest.BLAKE3 {
		j.err = fmt.Errorf("journal %s: piece %d has no BLAKE3 digest", j.f.Name(), r.Num)
		return j.err
	}
	if _, err := j.f.Write(r.line()); err != nil {
		j.err = fmt.Errorf("journal %s: %w", j.f.Name(), err)
	}
	return j.err
}

// Close closes the journal file (nil: nothing to close).
func (j *Journal) Close() error {
	if j == nil {
		return nil
	}
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("close journal %s: %w", j.f.Name(), err)
	}
	return nil
}

// ReadJournal reads the task's journal: its key must be key, or it is an
// error (as is no journal, fs.ErrNotExist). Records are parsed strictly;
// the first line that is torn (no newline), malformed, not canonical, for a
// piece number outside [0, pieces) or for a piece already recorded ends
// the journal: the records before it are returned.
func (s *Store) ReadJournal(taskID, key string, pieces int) ([]PieceRecord, error) {
	if err := validID(taskID); err != nil {
		return nil, err
	}
	f, err := os.Open(s.journalPath(taskID))
	if err != nil {
		return nil, fmt.Errorf("journal of %s: %w", taskID, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxJournalLine)
	head, err := readLine(r)
	if err != nil {
		return nil, fmt.Errorf("journal of %s: header: %w", taskID, err)
	}
	if head != journalMagic+" "+key {
		return nil, fmt.Errorf("journal of %s: not of this fetch", taskID)
	}
	var recs []PieceRecord
	seen := map[int]bool{}
	for {
		line, err := readLine(r)
		if err != nil {
			return recs, nil
		}
		rec, ok := parseRecord(line)
		if !ok || rec.Num >= pieces || seen[rec.Num] {
			return recs, nil
		}
		seen[rec.Num] = true
		recs = append(recs, rec)
	}
}

// readLine returns the next complete line, without its newline; a line
// without one (torn, or at EOF) or longer than the buffer is an error.
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	switch {
	case err == nil:
		return string(b[:len(b)-1]), nil
	case errors.Is(err, io.EOF) && len(b) > 0:
		return "", errors.New("torn line")
	default:
		return "", err
	}
}

// parseRecord accepts exactly "<num> <len> blake3:<hex>", the form Append
// writes.
func parseRecord(line string) (PieceRecord, bool) {
	f := strings.Split(line, " ")
	if len(f) != 3 {
		return PieceRecord{}, false
	}
	num, ok1 := canonicalInt(f[0])
	n, ok2 := canonicalInt(f[1])
	d, err := digest.Parse(f[2])
	if !ok1 || !ok2 || n == 0 || err != nil || d.Algorithm() != digest.BLAKE3 || d.String() != f[2] {
		return PieceRecord{}, false
	}
	return PieceRecord{Num: num, Len: n, Blake3: d}, true
}

func canonicalInt(s string) (int, bool) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || strconv.Itoa(v) != s {
		return 0, false
	}
	return v, true
}

// RemoveJournal deletes the task's journal (none is fine).
func (s *Store) RemoveJournal(taskID string) error {
	if err := validID(taskID); err != nil {
		return err
	}
	if err := os.Remove(s.journalPath(taskID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal of %s: %w", taskID, err)
	}
	return nil
}
