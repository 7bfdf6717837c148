package downloader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/fileio"
	"github.com/damselfly-p2p/damselfly/pkg/fsname"
)

// Piece is one verified piece handed to a writer. The writer owns it until
// it calls Release, which returns the buffer to the pool.
type Piece struct {
	Num     int
	Content []byte // plain bytes of the file
	Wrapped []byte // bytes as received (wrapped unless source-CDN mode)
	// NoShare: the supernode said no other client would fetch the piece
	// from us, so a stream keeps it out of its stream cache.
	NoShare bool
	// Info is the supernode's offer the piece was verified against (its
	// digest, range and piece size), and Raw says it was served without
	// a wrapper (source-CDN mode): a stream keeps both for the pieces it
	// writes out, to check the same bytes from elsewhere later.
	Info    types.PieceInfo
	Raw     bool
	release func()
	// owners beyond the first: the stream writer and its push to the
	// stream cache read the piece at the same time, and the buffer goes
	// back only when both are done with it.
	owners atomic.Int32
}

// share adds an owner, who must call Release too.
func (p *Piece) share() { p.owners.Add(1) }

// Release gives up one owner's use of the piece; the last one returns its
// buffer. An owner must not use the piece after.
func (p *Piece) Release() {
	if p.owners.Add(-1) >= 0 {
		return
	}
	if p.release != nil {
		p.release()
		p.release = nil
	}
}

// Writer receives verified pieces, possibly concurrently and out of order.
type Writer interface {
	// WritePiece stores p and takes ownership of it. A returned error is
	// fatal for the P2P attempt.
	WritePiece(ctx context.Context, p *Piece) error
}

var (
	_ Writer          = (*FileWriter)(nil)
	_ HasPieces       = (*FileWriter)(nil)
	_ WholeFileHasher = (*FileWriter)(nil)
)

// FileWriter writes pieces at their offsets into one file (the service
// file the peer server shares, or a temp file). When asked to hash, it
// computes the whole-file md5 and/or sha256 as the contiguous prefix grows,
// so finishing needs no second pass over the file.
type FileWriter struct {
	f       *os.File
	path    string
	content int64 // content bytes per full piece

	// wmu serializes writes: concurrent writers to one file contend on the
	// inode lock in the kernel, where waiters spin on the CPU; goroutines
	// parked on this lock leave the CPU to the fetches and hashing
	// (docs/benchmarks.md has the measurement).
	wmu sync.Mutex

	mu      sync.Mutex
	cond    *sync.Cond
	written map[int]int64 // piece -> content length
	hashing bool
	// required: a piece came without a digest of its own (RequireHash),
	// so only the whole-file md5 can vouch for it.
	required bool
	hashed   int  // pieces [0, hashed) are in h
	busy     bool // someone is feeding h (a writer or the hasher)
	h        digest.Whole
	sha      digest.Digest // the sha256, once Finish computed it
	closed   bool
	err      error
	hdone    chan struct{}
}

// NewFileWriter creates (truncating) path and starts its hasher, idle
// until EnableHash. contentPerPiece is pieceSize-5, or pieceSize in
// source-CDN mode.
func NewFileWriter(path string, contentPerPiece int64) (*FileWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, &LocalWriteError{fmt.Errorf("create %s: %w", path, err)}
	}
	w := &FileWriter{f: f, path: path, content: contentPerPiece, written: map[int]int64{}, hdone: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.hasher()
	return w, nil
}

// Path is the file written.
func (w *FileWriter) Path() string { return w.path }

// Has implements HasPieces: piece num is written.
func (w *FileWriter) Has(num int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.written[num]
	return ok
}

// Written is the number of pieces written.
func (w *FileWriter) Written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.written)
}

// Preallocate reserves the file's final length up front (fileio.Reserve):
// a full disk shows at the start, and the piece writes are cheaper.
func (w *FileWriter) Preallocate(length int64) error {
	if err := fileio.Reserve(w.f, length, false); err != nil {
		return &LocalWriteError{fmt.Errorf("no space in %s: %w", filepath.Dir(w.path), err)}
	}
	return nil
}

// EnableHash implements WholeFileHasher: the md5 of the file. It may be
// called at any time: the hasher catches up from the start of the file.
func (w *FileWriter) EnableHash() { w.enable(true, false) }

// RequireHash implements WholeFileHasher: EnableHash, and HashRequired
// reports true from then on.
func (w *FileWriter) RequireHash() {
	w.mu.Lock()
	w.required = true
	w.mu.Unlock()
	w.EnableHash()
}

// HashRequired reports that some piece is vouched for only by the
// whole-file md5, which must then be checked against an expected one.
func (w *FileWriter) HashRequired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.required
}

// ReadPiece reads back the content of written piece num, to check a piece
// written before a migration against the new supernode's digest.
func (w *FileWriter) ReadPiece(num int) ([]byte, error) {
	w.mu.Lock()
	n, ok := w.written[num]
	w.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("piece %d is not in %s", num, w.path)
	}
	b := make([]byte, n)
	if _, err := w.f.ReadAt(b, int64(num)*w.content); err != nil {
		return nil, &LocalWriteError{fmt.Errorf("read back piece %d of %s: %w", num, w.path, err)}
	}
	return b, nil
}

// Drop forgets piece num, whose bytes turned out not to be the file's: it
// must be written again. A whole-file hash that already covered it starts
// over, since those bytes are in it.
func (w *FileWriter) Drop(num int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.busy {
		w.cond.Wait()
	}
	delete(w.written, num)
	if w.hashing && w.hashed > num {
		w.h, w.hashed = digest.NewWhole(w.h.HasMd5(), w.h.HasSha256()), 0
	}
	w.cond.Broadcast()
}

// EnableSha256 adds the whole file's sha256, which Finish's caller reads
// with Sha256.
func (w *FileWriter) EnableSha256() { w.enable(false, true) }

// enable adds digests. One added after hashing began restarts it, with
// every digest, from the start of the file: each covers all of it.
func (w *FileWriter) enable(md5Sum, sha256Sum bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.busy {
		w.cond.Wait()
	}
	md5Sum, sha256Sum = md5Sum || w.h.HasMd5(), sha256Sum || w.h.HasSha256()
	if md5Sum == (w.h.HasMd5()) && sha256Sum == (w.h.HasSha256()) {
		return
	}
	w.h, w.hashed, w.hashing = digest.NewWhole(md5Sum, sha256Sum), 0, true
	w.cond.Broadcast()
}

// WritePiece implements Writer.
func (w *FileWriter) WritePiece(_ context.Context, p *Piece) error {
	defer p.Release()
	w.wmu.Lock()
	_, err := fileio.WriteAt(w.f, p.Content, int64(p.Num)*w.content)
	w.wmu.Unlock()
	if err != nil {
		return &LocalWriteError{fmt.Errorf("write piece %d to %s: %w", p.Num, w.path, err)}
	}
	w.mu.Lock()
	w.written[p.Num] = int64(len(p.Content))
	if w.hashing && !w.busy && p.Num == w.hashed {
		// The next piece of the prefix is in hand: hash it from memory
		// instead of having the hasher read it back.
		w.busy = true
		w.mu.Unlock()
		w.h.Write(p.Content)
		w.mu.Lock()
		w.hashed++
		w.busy = false
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	return nil
}

// hasher reads the file back (from the page cache) as its prefix becomes
// contiguous and feeds it to the md5.
func (w *FileWriter) hasher() {
	defer close(w.hdone)
	buf := make([]byte, 1<<20)
	for {
		w.mu.Lock()
		for !w.closed && (w.busy || !w.ready()) {
			w.cond.Wait()
		}
		if w.busy || !w.ready() {
			w.mu.Unlock()
			return
		}
		num, n := w.hashed, w.written[w.hashed]
		w.busy = true
		w.mu.Unlock()
		off := int64(num) * w.content
		if _, err := io.CopyBuffer(&w.h, io.NewSectionReader(w.f, off, n), buf); err != nil {
			w.mu.Lock()
			w.busy = false
			w.err = fmt.Errorf("hash %s: %w", w.path, err)
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		w.hashed++
		w.busy = false
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// ready reports that hashing is on and the piece at the hash position is
// written. Caller holds mu.
func (w *FileWriter) ready() bool {
	if !w.hashing {
		return false
	}
	_, ok := w.written[w.hashed]
	return ok
}

// Finish checks that pieces [0, count) are written, waits for the hasher
// if hashing, cuts the file to their length (space reserved for a longer
// file, or pieces of one, must not trail it), closes the file, and returns
// the file's length and md5 ("" when not computed); the sha256, if
// enabled, is then read with Sha256.
func (w *FileWriter) Finish(ctx context.Context, count int) (int64, string, error) {
	stop := context.AfterFunc(ctx, func() { w.mu.Lock(); w.cond.Broadcast(); w.mu.Unlock() })
	defer stop()
	w.mu.Lock()
	var length int64
	for i := 0; i < count && w.err == nil; i++ {
		n, ok := w.written[i]
		if !ok {
			w.err = fmt.Errorf("piece %d missing from %s", i, w.path)
		}
		length += n
	}
	for w.err == nil && ctx.Err() == nil && w.hashing && w.hashed < count {
		w.cond.Wait()
	}
	err, sum := w.err, w.h.Md5Hex()
	w.sha = w.h.Sha256()
	if err == nil {
		err = ctx.Err()
	}
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.hdone
	if err == nil {
		if terr := w.f.Truncate(length); terr != nil {
			err = &LocalWriteError{fmt.Errorf("truncate %s to %d: %w", w.path, length, terr)}
		}
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = &LocalWriteError{fmt.Errorf("close %s: %w", w.path, cerr)}
	}
	return length, sum, err
}

// Sha256 is the file's sha256 after Finish (zero when not enabled).
func (w *FileWriter) Sha256() digest.Digest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sha
}

// Abort stops the hasher and closes the file without checking anything.
func (w *FileWriter) Abort() {
	w.mu.Lock()
	w.closed = true
	w.hashing = false
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.hdone
	_ = w.f.Close()
}

// Publish makes src appear atomically at dst: a hard link when both are on
// one file system, else a copy, written under a temporary name in dst's
// directory and renamed over dst. dst is untouched on any failure, which
// is a LocalWriteError.
func Publish(src, dst string) error {
	if err := publish(src, dst); err != nil {
		return &LocalWriteError{err}
	}
	return nil
}

func publish(src, dst string) error {
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, fsname.TempPattern(dst, "dfget"))
	if err != nil {
		return fmt.Errorf("publish %s: %w", dst, err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	os.Remove(tmpName)
	if err := os.Link(src, tmpName); err != nil {
		if err := copyFile(src, tmpName); err != nil {
			os.Remove(tmpName)
			return fmt.Errorf("publish %s: %w", dst, err)
		}
	}
	if err := os.Rename(tmpName, dst); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("publish %s: %w", dst, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// EqualMd5 compares md5 hex strings case-insensitively.
func EqualMd5(a, b string) bool { return strings.EqualFold(a, b) }

// LocalWriteError is a failure to write the download on this host: the
// service file, a temp file or the output (no space, quota, read-only file
// system, I/O error, permissions). Fetching the file again, from the source
// or anywhere, would end the same way, so it is never a reason to.
type LocalWriteError struct{ Err error }

func (e *LocalWriteError) Error() string { return e.Err.Error() }
func (e *LocalWriteError) Unwrap() error { return e.Err }

// NoSpace reports that the file system or the quota is full.
func (e *LocalWriteError) NoSpace() bool {
	return errors.Is(e.Err, unix.ENOSPC) || errors.Is(e.Err, unix.EDQUOT)
}

// ErrConsumerGone means the stream's reader closed its end (EPIPE).
var ErrConsumerGone = errors.New("output closed by its reader")
