package cdn

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// lazyMd5 is a cache file's md5 state. The fill computes only BLAKE3; md5
// is what Dragonfly 1.x clients check, so it is computed when one of them
// needs it: a piece's md5 when such a client is offered the piece, the
// whole-file md5 for its 600 answer. Each is computed once, from the cache
// file, and only after the bytes read back match their BLAKE3 digest, so a
// damaged cache is never blessed with a fresh md5. Guarded by cacheFile.mu.
type lazyMd5 struct {
	path string // the data file ("" in the source pattern)
	// key is the content key of a complete file, which keys its sidecars.
	key string
	// computing has a channel per piece whose md5 is being computed,
	// closed when it is done, so concurrent askers compute it once.
	computing map[int]chan struct{}
	saved     bool   // every piece md5 is in the .md5 sidecar
	fileMd5   string // the whole-file md5, once known
	// file is the latest computation of fileMd5. One that failed is not
	// kept: the next asker starts another, so a transient error (an open
	// that failed) does not fail every later client.
	file *fileMd5Run
}

// fileMd5Run is one computation of the whole-file md5.
type fileMd5Run struct {
	done chan struct{} // closed once sum or err is set
	sum  string
	err  error
}

// failed reports whether the run ended with an error.
func (r *fileMd5Run) failed() bool {
	select {
	case <-r.done:
		return r.err != nil
	default:
		return false
	}
}

// PieceMd5 is the "md5:len" of a written piece, computed on first demand
// ("" when the piece is not ready, or its bytes no longer match its BLAKE3
// digest: such a piece is not offered).
func (m *Manager) PieceMd5(taskID string, num int) string {
	cf := m.file(taskID)
	if cf == nil {
		return ""
	}
	cf.mu.Lock()
	if num < 0 || num >= len(cf.md5s) || !cf.ready.Test(uint(num)) {
		cf.mu.Unlock()
		return ""
	}
	if s := cf.md5s[num]; s != "" || cf.source {
		cf.mu.Unlock()
		return s
	}
	if ch := cf.lazy.computing[num]; ch != nil {
		cf.mu.Unlock()
		<-ch
		cf.mu.Lock()
		defer cf.mu.Unlock()
		return cf.md5s[num]
	}
	ch := make(chan struct{})
	if cf.lazy.computing == nil {
		cf.lazy.computing = map[int]chan struct{}{}
	}
	cf.lazy.computing[num] = ch
	want, n, path := cf.blake3s[num], int(cf.lens[num]), cf.lazy.path
	cf.mu.Unlock()
	sum, err := hashPiece(path, int64(num)*int64(cf.pieceSize), n, want)
	m.metrics.Md5OnDemand.Inc()
	cf.mu.Lock()
	delete(cf.lazy.computing, num)
	if err == nil {
		cf.md5s[num] = sum
	}
	save := err == nil && cf.completeMd5s()
	cf.mu.Unlock()
	close(ch)
	if err != nil {
		m.log.WithField("task", taskID).WithError(err).Warnf("no md5 for piece %d", num)
		m.reportDamage(taskID, err)
		return ""
	}
	if save {
		m.saveMd5s(taskID, cf)
	}
	return sum
}

// completeMd5s reports, once, that a complete file has every piece md5,
// for the caller to write the .md5 sidecar. cf.mu is held.
func (cf *cacheFile) completeMd5s() bool {
	if !cf.done || !cf.ok || cf.lazy.key == "" || cf.lazy.saved {
		return false
	}
	for _, s := range cf.md5s {
		if s == "" {
			return false
		}
	}
	cf.lazy.saved = true
	return true
}

// saveMd5s writes the .md5 sidecar once every piece md5 is known: partial
// sets stay in memory (after a restart each piece is hashed again on
// demand, one read of one piece), so a v1 client costs one sidecar write
// per file, not one per piece. A file the task no longer has (GC dropped
// it, and perhaps its cache) gets none.
func (m *Manager) saveMd5s(id string, cf *cacheFile) {
	cf.mu.Lock()
	md5s, key := append([]string(nil), cf.md5s...), cf.lazy.key
	cf.mu.Unlock()
	var err error
	m.whileCurrent(id, cf, func() { err = m.store.WriteMd5(id, md5s, key) })
	if err != nil {
		m.log.WithField("task", id).WithError(err).Warn("write md5 sidecar")
	}
}

// hashPiece reads n bytes at off of the cache file and returns their
// "md5:len" after checking them against want.
func hashPiece(path string, off int64, n int, want digest.Digest) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = &damageError{off: off, n: n, err: err}
		}
		return "", fmt.Errorf("open cache: %w", err)
	}
	defer f.Close()
	b := make([]byte, n)
	if err := readBack(f, b, off, want); err != nil {
		return "", err
	}
	return piece.Md5Value(b), nil
}

// readBack reads len(b) bytes at off of a cache file and checks them
// against want: bytes that differ, or a file that ends before them, are a
// *damageError; any other read error may pass and is not.
func readBack(f *os.File, b []byte, off int64, want digest.Digest) error {
	_, err := f.ReadAt(b, off)
	switch {
	case errors.Is(err, io.EOF):
		return &damageError{off: off, n: len(b), err: err}
	case err != nil:
		return fmt.Errorf("read cache at %d: %w", off, err)
	}
	if err := want.Verify(b); err != nil {
		return &damageError{off: off, n: len(b), err: err}
	}
	return nil
}

// damageError is a cache file whose n wrapped bytes at off fail their
// digest or are missing.
type damageError struct {
	off int64
	n   int
	err error
}

func (e *damageError) Error() string {
	return fmt.Sprintf("cache bytes %d-%d are damaged: %v", e.off, e.off+int64(e.n)-1, e.err)
}

func (e *damageError) Unwrap() error { return e.err }

// reportDamage passes damage that err found on to the Damage handler,
// which drops the cache as a client's confirmed piece error would.
func (m *Manager) reportDamage(id string, err error) {
	var de *damageError
	if !errors.As(err, &de) || m.cfg.Damage == nil {
		return
	}
	m.cfg.Damage.CacheDamaged(id, strconv.FormatInt(de.off, 10)+"-"+strconv.FormatInt(de.off+int64(de.n)-1, 10))
}

// FileMd5 is the whole-file md5 of a task's content, for the 600 answer
// to a client that checks it. Unless the fetch computed it (the task
// expects an md5, or the source pattern), it is computed once, after the
// fetch ends, by one read of the cache file in which every piece is
// checked against its BLAKE3 digest, and recorded in the meta.
func (m *Manager) FileMd5(ctx context.Context, taskID string) (string, error) {
	cf := m.file(taskID)
	if cf == nil {
		return "", fmt.Errorf("task %s: no cache file", taskID)
	}
	r := m.startFileMd5(taskID, cf)
	select {
	case <-r.done:
		return r.sum, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// PrepareFileMd5 starts computing the whole-file md5 (see FileMd5) without
// waiting: called when a client that will need it shows up, so the read
// overlaps its download instead of delaying its 600.
func (m *Manager) PrepareFileMd5(taskID string) {
	if cf := m.file(taskID); cf != nil {
		m.startFileMd5(taskID, cf)
	}
}

// startFileMd5 returns the running or successful computation of the
// whole-file md5, or starts one.
func (m *Manager) startFileMd5(id string, cf *cacheFile) *fileMd5Run {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if r := cf.lazy.file; r != nil && !r.failed() {
		return r
	}
	r := &fileMd5Run{done: make(chan struct{})}
	cf.lazy.file = r
	if m.ctx.Err() != nil {
		r.err = errors.New("cdn manager is closed")
		close(r.done)
		return r
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		r.sum, r.err = m.waitAndHashFile(id, cf)
		if r.err == nil {
			cf.mu.Lock()
			cf.lazy.fileMd5 = r.sum
			cf.mu.Unlock()
		}
	}()
	return r
}

// waitAndHashFile waits for the fetch to end and returns the content md5:
// the one the fetch knows, or one read of the file.
func (m *Manager) waitAndHashFile(id string, cf *cacheFile) (string, error) {
	select {
	case <-cf.finished:
	case <-m.ctx.Done():
		return "", m.ctx.Err()
	}
	cf.mu.Lock()
	ok, known, key := cf.ok, cf.lazy.fileMd5, cf.lazy.key
	blake3s, lens := append([]digest.Digest(nil), cf.blake3s...), append([]int32(nil), cf.lens...)
	cf.mu.Unlock()
	switch {
	case !ok:
		return "", fmt.Errorf("task %s: the fetch failed", id)
	case known != "" || cf.source:
		return known, nil
	}
	sum, err := hashFile(m.ctx, cf.lazy.path, cf.pieceSize, blake3s, lens)
	m.metrics.Md5OnDemand.Inc()
	if err != nil {
		m.log.WithField("task", id).WithError(err).Warn("no whole-file md5")
		m.reportDamage(id, err)
		return "", err
	}
	m.whileCurrent(id, cf, func() { m.recordFileMd5(id, key, sum) })
	return sum, nil
}

// recordFileMd5 writes a computed whole-file md5 into the meta, if the
// meta is still of the complete file of content key.
func (m *Manager) recordFileMd5(id, key, sum string) {
	meta, err := m.store.ReadMeta(id)
	if err != nil || meta.Blake3 != key || !meta.Finish || !meta.Success {
		return
	}
	meta.RealMd5 = sum
	if err := m.store.WriteMeta(meta); err != nil {
		m.log.WithField("task", id).WithError(err).Warn("record the file md5")
	}
}

// hashFile is the md5 of a cache file's content, each piece checked
// against its BLAKE3 digest first.
func hashFile(ctx context.Context, path string, pieceSize int32, blake3s []digest.Digest, lens []int32) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && len(lens) > 0 {
			err = &damageError{off: 0, n: int(lens[0]), err: err}
		}
		return "", fmt.Errorf("open cache: %w", err)
	}
	defer f.Close()
	h := md5.New()
	buf := make([]byte, pieceSize)
	for i, want := range blake3s {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		b := buf[:lens[i]]
		if err := readBack(f, b, int64(i)*int64(pieceSize), want); err != nil {
			return "", fmt.Errorf("cache piece %d: %w", i, err)
		}
		content, err := piece.Unwrap(b)
		if err != nil {
			return "", fmt.Errorf("cache piece %d: %w", i, err)
		}
		h.Write(content)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
