// Package store is the supernode's on-disk cache layout under <home>/repo:
// the wrapped CDN data file of each task and its .meta (JSON), .md5 and
// .blake3 (text) sidecars, written atomically so a crash never leaves a
// torn sidecar, and the .journal of a fill (journal.go), appended a line per
// piece and read strictly, so a resume keeps only pieces it vouches for.
package store

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// DownloadDir is the sub-directory of the repo holding CDN files; it is the
// only part the piece server serves.
const DownloadDir = "download"

// Meta is the .meta sidecar, with the v1 JSON keys. URL credentials never
// reach the disk: WriteMeta stores the URL with them masked and, to still
// recognise the task's URL when the cache is reused, URLDigest (the SHA-256
// of the real URL); SameURL compares with both.
type Meta struct {
	TaskID       string `json:"taskID"`
	URL          string `json:"url"`
	URLDigest    string `json:"urlDigest,omitempty"`
	PieceSize    int32  `json:"pieceSize"`
	HTTPFileLen  int64  `json:"httpFileLen"`
	BizID        string `json:"bizId"`
	AccessTime   int64  `json:"accessTime"`
	Interval     int64  `json:"interval"`
	FileLength   int64  `json:"fileLength"`
	Md5          string `json:"md5"`
	RealMd5      string `json:"realMd5"`
	LastModified int64  `json:"lastModified"`
	ETag         string `json:"eTag"`
	Finish       bool   `json:"finish"`
	Success      bool   `json:"success"`
	// LastModifiedStrong says LastModified is a strong validator: the
	// source's Date, in the answer it came in, was at least a second
	// later (RFC 9110 8.8.2.2). A weak date may be shared by two versions
	// written within one second, so it never validates nor resumes a
	// cache. False in a meta written before the field: such a date is
	// taken for weak.
	LastModifiedStrong bool `json:"lastModifiedStrong,omitempty"`
	// Blake3 identifies the content of a complete file: the BLAKE3 of its
	// pieces' BLAKE3 digests. The sidecars are keyed by it, so a sidecar
	// of other content is never read. Empty in a cache written before it.
	Blake3 string `json:"blake3,omitempty"`
	// Sha256 is the whole file's sha256, "sha256:<hex>", when a fetch was
	// asked to check one (RealMd5 likewise may be empty: both whole-file
	// digests are computed only when something needs them).
	Sha256 string `json:"sha256,omitempty"`
}

// Store is a local directory store.
type Store struct {
	root string
}

// New creates <root>/download if needed and sweeps it of what a crash
// left behind (sweep).
func New(root string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(root, DownloadDir), 0o755); err != nil {
		return nil, fmt.Errorf("create repo %s: %w", root, err)
	}
	s := &Store{root: root}
	if err := s.sweep(); err != nil {
		return nil, err
	}
	return s, nil
}

// sweep removes the files that disk GC, which lists tasks by their .meta,
// would never remove: the temporary files of atomic writes a crash cut
// short, and the data files, sidecars and journals of tasks without a
// .meta (Remove deletes the .meta last, so a crash during a Remove leaves
// it). It runs before the CDN starts: nothing it removes is being written.
func (s *Store) sweep() error {
	dir := filepath.Join(s.root, DownloadDir)
	buckets, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sweep repo %s: %w", s.root, err)
	}
	for _, b := range buckets {
		if !b.IsDir() {
			continue
		}
		bdir := filepath.Join(dir, b.Name())
		files, err := os.ReadDir(bdir)
		if err != nil {
			continue // an unreadable bucket: disk GC reports it when it lists the repo
		}
		for _, f := range files {
			if !f.IsDir() && leftover(bdir, f.Name()) {
				// A failure is not fatal: the next start tries again.
				_ = os.Remove(filepath.Join(bdir, f.Name()))
			}
		}
		_ = os.Remove(bdir) // fails when not empty, as intended
	}
	return nil
}

// leftover reports whether file name of bucket dir is a temporary file, or
// a task's data file, sidecar or journal while the task has no .meta.
func leftover(dir, name string) bool {
	if strings.HasPrefix(name, ".tmp-") {
		return true
	}
	ext := filepath.Ext(name)
	switch ext {
	case "", ".md5", ".blake3", ".journal":
	default:
		return false
	}
	id := strings.TrimSuffix(name, ext)
	if validID(id) != nil || bucket(id) != filepath.Base(dir) {
		return false // not a file this store wrote
	}
	_, err := os.Lstat(filepath.Join(dir, id+".meta"))
	return errors.Is(err, fs.ErrNotExist)
}

// Root is the repo directory.
func (s *Store) Root() string { return s.root }

// RelPath is the URL path (and repo-relative path) of a task's data file:
// /download/<id[0:3]>/<id>.
func RelPath(taskID string) string {
	return "/" + DownloadDir + "/" + bucket(taskID) + "/" + taskID
}

func bucket(taskID string) string {
	if len(taskID) < 3 {
		return taskID
	}
	return taskID[:3]
}

// validID keeps task IDs from escaping the repo.
func validID(taskID string) error {
	if taskID == "" || strings.ContainsAny(taskID, "/\\.") {
		return fmt.Errorf("invalid task id %q", taskID)
	}
	return nil
}

// DataPath is the absolute path of a task's data file.
func (s *Store) DataPath(taskID string) string {
	return filepath.Join(s.root, DownloadDir, bucket(taskID), taskID)
}

func (s *Store) metaPath(taskID string) string { return s.DataPath(taskID) + ".meta" }
func (s *Store) md5Path(taskID string) string  { return s.DataPath(taskID) + ".md5" }
func (s *Store) blake3Path(taskID string) string {
	return s.DataPath(taskID) + ".blake3"
}

// OpenData opens (creating) the data file for writing; truncate starts over.
func (s *Store) OpenData(taskID string, truncate bool) (*os.File, error) {
	if err := validID(taskID); err != nil {
		return nil, err
	}
	p := s.DataPath(taskID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("create bucket for %s: %w", taskID, err)
	}
	flags := os.O_RDWR | os.O_CREATE
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open data of %s: %w", taskID, err)
	}
	return f, nil
}

// ReadMeta returns the meta of a task; fs.ErrNotExist when there is none.
func (s *Store) ReadMeta(taskID string) (*Meta, error) {
	if err := validID(taskID); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.metaPath(taskID))
	if err != nil {
		return nil, fmt.Errorf("read meta of %s: %w", taskID, err)
	}
	m := &Meta{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("parse meta of %s: %w", taskID, err)
	}
	return m, nil
}

// SameURL reports whether the meta was written for the task URL u.
func (m *Meta) SameURL(u string) bool {
	if m.URLDigest == "" {
		return m.URL == u
	}
	return m.URL == urlutil.Redact(u) && m.URLDigest == urlDigest(u)
}

func urlDigest(u string) string {
	sum := sha256.Sum256([]byte(u))
	return hex.EncodeToString(sum[:])
}

// WriteMeta replaces the meta of a task atomically, with the URL's
// credentials masked (m itself is left as it is).
func (s *Store) WriteMeta(m *Meta) error {
	if err := validID(m.TaskID); err != nil {
		return err
	}
	onDisk := *m
	if masked := urlutil.Redact(m.URL); masked != m.URL {
		onDisk.URL, onDisk.URLDigest = masked, urlDigest(m.URL)
	}
	b, err := json.Marshal(&onDisk)
	if err != nil {
		return fmt.Errorf("encode meta of %s: %w", m.TaskID, err)
	}
	return writeAtomic(s.metaPath(m.TaskID), b)
}

// WriteMd5 writes the .md5 sidecar: one "md5:len" line per piece (empty for
// a piece whose md5 is not computed yet), the key of the content (the whole
// file md5 in v1's layout; the CDN uses Meta.Blake3), then the SHA-1 of the
// preceding lines.
func (s *Store) WriteMd5(taskID string, pieceMd5s []string, fileMd5 string) error {
	if err := validID(taskID); err != nil {
		return err
	}
	return writeSidecar(s.md5Path(taskID), pieceMd5s, fileMd5)
}

// ReadMd5 reads and verifies the .md5 sidecar; fileMd5 must match want when
// want is non-empty.
func (s *Store) ReadMd5(taskID, want string) ([]string, error) {
	if err := validID(taskID); err != nil {
		return nil, err
	}
	lines, err := readSidecar(s.md5Path(taskID), want)
	if err != nil {
		return nil, fmt.Errorf("md5 of %s: %w", taskID, err)
	}
	return lines, nil
}

// WriteBlake3 writes the .blake3 sidecar, the pieces' BLAKE3 digests in the
// .md5 sidecar's layout: one "blake3:<hex>" line per piece, the whole-file
// md5 (which ties it to the same content), then the SHA-1 of the preceding
// lines. It is a file of its own so the .md5 sidecar keeps the layout a
// Dragonfly 1.x supernode reads.
func (s *Store) WriteBlake3(taskID string, pieces []digest.Digest, fileMd5 string) error {
	if err := validID(taskID); err != nil {
		return err
	}
	lines := make([]string, len(pieces))
	for i, d := range pieces {
		if d.Algorithm() != digest.BLAKE3 {
			return fmt.Errorf("blake3 of %s: piece %d has no BLAKE3 digest", taskID, i)
		}
		lines[i] = d.String()
	}
	return writeSidecar(s.blake3Path(taskID), lines, fileMd5)
}

// ReadBlake3 reads and verifies the .blake3 sidecar; its file md5 must match
// want when want is non-empty. A cache written before BLAKE3 has none: that
// is an error (fs.ErrNotExist), for the caller to re-hash the file.
func (s *Store) ReadBlake3(taskID, want string) ([]digest.Digest, error) {
	if err := validID(taskID); err != nil {
		return nil, err
	}
	lines, err := readSidecar(s.blake3Path(taskID), want)
	if err != nil {
		return nil, fmt.Errorf("blake3 of %s: %w", taskID, err)
	}
	out := make([]digest.Digest, len(lines))
	for i, l := range lines {
		d, err := digest.Parse(l)
		if err != nil {
			return nil, fmt.Errorf("blake3 of %s: piece %d: %w", taskID, i, err)
		}
		if d.Algorithm() != digest.BLAKE3 {
			return nil, fmt.Errorf("blake3 of %s: piece %d is %s, want blake3", taskID, i, d.Algorithm())
		}
		out[i] = d
	}
	return out, nil
}

// writeSidecar writes lines, fileMd5 and the SHA-1 of both atomically.
func writeSidecar(path string, lines []string, fileMd5 string) error {
	var sb strings.Builder
	for _, p := range lines {
		sb.WriteString(p)
		sb.WriteByte('\n')
	}
	sb.WriteString(fileMd5)
	sb.WriteByte('\n')
	sum := sha1.Sum([]byte(sb.String()))
	sb.WriteString(hex.EncodeToString(sum[:]))
	sb.WriteByte('\n')
	return writeAtomic(path, []byte(sb.String()))
}

// readSidecar reads a file writeSidecar wrote and checks its SHA-1 and,
// when want is non-empty, its file md5. It returns the per-piece lines.
func readSidecar(path, want string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(lines) < 3 {
		return nil, errors.New("too short")
	}
	body := strings.Join(lines[:len(lines)-1], "\n") + "\n"
	sum := sha1.Sum([]byte(body))
	if hex.EncodeToString(sum[:]) != lines[len(lines)-1] {
		return nil, errors.New("sha1 mismatch")
	}
	if fm := lines[len(lines)-2]; want != "" && fm != want {
		return nil, fmt.Errorf("file md5 %s, want %s", fm, want)
	}
	return lines[:len(lines)-2], nil
}

// Remove deletes the data file, its sidecars and journal, and the bucket
// when empty. The .meta goes last: disk GC finds a task by it, so a Remove
// cut short (a crash, an error) leaves it for the next one to finish.
func (s *Store) Remove(taskID string) error {
	if err := validID(taskID); err != nil {
		return err
	}
	var errs []error
	for _, p := range []string{s.DataPath(taskID), s.md5Path(taskID), s.blake3Path(taskID), s.journalPath(taskID), s.metaPath(taskID)} {
		if len(errs) > 0 && p == s.metaPath(taskID) {
			break // kept, for a later Remove to find the rest
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(filepath.Dir(s.DataPath(taskID))) // fails when not empty, as intended
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove %s: %w", taskID, err)
	}
	return nil
}

// TaskIDs lists the task IDs that have a meta sidecar on disk.
func (s *Store) TaskIDs() ([]string, error) {
	var ids []string
	err := filepath.WalkDir(filepath.Join(s.root, DownloadDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".meta") {
			ids = append(ids, strings.TrimSuffix(d.Name(), ".meta"))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk repo: %w", err)
	}
	return ids, nil
}

// DataSize is the size of the data file on disk (0 when absent).
func (s *Store) DataSize(taskID string) int64 {
	fi, err := os.Stat(s.DataPath(taskID))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// DataUsage is the space the data file takes on disk (0 when absent): its
// allocated blocks. A fill reserves blocks past the length it has written
// (fileio.Reserve), so the length alone can say 0 of a file that holds
// gigabytes.
func (s *Store) DataUsage(taskID string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(s.DataPath(taskID), &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// AvailSpace is the free space for unprivileged users on the repo's disk.
func (s *Store) AvailSpace() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.root, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// DiskSize is the size of the repo's file system.
func (s *Store) DiskSize() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.root, err)
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// No fsync: rename keeps a reader (or a restarted supernode) from ever
	// seeing a torn sidecar; on ext4 an fsync here would also flush the
	// whole freshly written data file and stall the CDN for seconds.
	werr := tmp.Chmod(0o644)
	if werr == nil {
		_, werr = tmp.Write(b)
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}
