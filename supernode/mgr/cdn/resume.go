package cdn

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// prefix is the valid leading pieces of a cache file.
type prefix struct {
	count   int
	md5s    []string // only when the scan was asked for them
	lens    []int    // wrapped lengths
	blake3s []digest.Digest
	sums    *fileSums
}

// scanPrefix reads the data file piece by piece and stops at the first
// piece whose header, length or tail is wrong or, with want, whose bytes do
// not hash to its journal record: a piece's structure can survive a crash
// that lost its middle. length < 0 scans to the end. Each piece gets its
// BLAKE3; sums (whole-file digests) and, with md5s, the pieces' md5s are
// computed only when asked for.
func (m *Manager) scanPrefix(id string, pieceSize int32, length int64, sums *fileSums, md5s bool,
	want map[int]store.PieceRecord) (*prefix, error) {
	f, err := os.Open(m.store.DataPath(id))
	if err != nil {
		return nil, fmt.Errorf("open cache of %s: %w", id, err)
	}
	defer f.Close()
	p := &prefix{sums: sums}
	buf := make([]byte, pieceSize)
	maxCount := -1
	if length >= 0 {
		maxCount = piece.Count(length, pieceSize)
	}
	for maxCount < 0 || p.count < maxCount {
		n, err := io.ReadFull(f, buf)
		if n == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read cache of %s: %w", id, err)
		}
		content, uerr := piece.Unwrap(buf[:n])
		if uerr != nil {
			break
		}
		if length >= 0 && int64(len(content)) != piece.ContentLength(p.count, length, pieceSize) {
			break
		}
		b3 := digest.Sum(digest.BLAKE3, buf[:n])
		if rec, ok := want[p.count]; want != nil && (!ok || rec.Len != n || rec.Blake3 != b3) {
			break
		}
		_, _ = sums.Write(content)
		if md5s {
			p.md5s = append(p.md5s, piece.Md5Value(buf[:n]))
		}
		p.lens = append(p.lens, n)
		p.blake3s = append(p.blake3s, b3)
		p.count++
		if n < len(buf) {
			break
		}
	}
	return p, nil
}

// resumable is the prefix of a partial cache that a fetch may keep: only
// pieces its journal records, whose bytes on disk hash to the recorded
// digest. A cache without a journal of this fetch (torn, of another fetch,
// or written before journals) keeps nothing.
func (m *Manager) resumable(id string, meta *store.Meta, sums *fileSums) *prefix {
	total := piece.Count(meta.HTTPFileLen, meta.PieceSize)
	recs, err := m.store.ReadJournal(id, journalKey(meta), total)
	if err != nil {
		m.log.WithField("task", id).WithError(err).Info("partial cache not resumable: fetching from the start")
		return nil
	}
	want := make(map[int]store.PieceRecord, len(recs))
	for _, r := range recs {
		want[r.Num] = r
	}
	pre, err := m.scanPrefix(id, meta.PieceSize, meta.HTTPFileLen, sums, false, want)
	if err != nil || pre.count == 0 {
		return nil
	}
	return pre
}

// journalKey ties a journal to the fetch that writes it: a journal of
// another task, piece size, length or validators is never read.
func journalKey(meta *store.Meta) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\n%d\n%d\n%s\n%d", meta.TaskID, meta.PieceSize, meta.HTTPFileLen,
		meta.ETag, meta.LastModified)))
	return hex.EncodeToString(h[:])
}

// records are the journal records of the kept pieces.
func (p *prefix) records() []store.PieceRecord {
	if p == nil {
		return nil
	}
	recs := make([]store.PieceRecord, p.count)
	for i := range recs {
		recs[i] = store.PieceRecord{Num: i, Len: p.lens[i], Blake3: p.blake3s[i]}
	}
	return recs
}

// keepPrefix keeps the valid pieces a resume found: the file is cut after
// them and they are offered at once. It returns the whole-file digests of
// the content so far and the number of the first piece to fetch.
func (m *Manager) keepPrefix(f *os.File, src Source, cf *cacheFile, pieceSize int32, resume *prefix) (*fileSums, int, error) {
	if resume == nil {
		return newFileSums(src), 0, nil
	}
	if err := f.Truncate(int64(resume.count) * int64(pieceSize)); err != nil {
		return nil, 0, fmt.Errorf("truncate cache of %s: %w", src.TaskID, err)
	}
	for i := range resume.count {
		m.setReady(src.TaskID, cf, i, "", resume.lens[i], resume.blake3s[i])
	}
	return resume.sums, resume.count, nil
}

// reuse serves a validated complete cache file: piece digests from the
// .md5 and .blake3 sidecars (or by re-hashing the file), every piece ready
// at once. cf is the task's file of a fill that waited for its turn (of
// the cache's piece size: plan), or nil: a new one is installed.
func (m *Manager) reuse(src Source, meta *store.Meta, cf *cacheFile) (Result, bool) {
	id := src.TaskID
	total := piece.Count(meta.HTTPFileLen, meta.PieceSize)
	if meta.HTTPFileLen < 0 {
		total = int((meta.FileLength + int64(meta.PieceSize) - 1) / int64(meta.PieceSize))
	}
	md5s, blake3s, ok := m.cachedDigests(id, meta, total)
	if !ok {
		m.log.Warnf("cache of %s is damaged, refetching", id)
		return Result{}, false
	}
	fi, err := os.Stat(m.store.DataPath(id))
	if err != nil || fi.Size() != meta.FileLength {
		m.log.Warnf("cache data of %s is missing or has the wrong size, refetching", id)
		return Result{}, false
	}
	now := time.Now().UnixMilli()
	meta.Interval = now - meta.AccessTime
	meta.AccessTime = now
	if err := m.store.WriteMeta(meta); err != nil {
		m.log.WithError(err).Warnf("update meta of %s", id)
	}
	// The file, with its digests, is complete before progress learns of
	// any piece: the scheduler may offer a piece the moment it is announced.
	if cf != nil {
		cf.reused(m.store.DataPath(id), md5s, blake3s, meta)
	} else {
		cf = newCacheFile(meta.PieceSize, total, nil)
		cf.reused(m.store.DataPath(id), md5s, blake3s, meta)
		close(cf.exited)
		m.setFile(id, cf)
	}
	for i := range total {
		m.progress.SetCDNPiece(id, i)
	}
	m.progress.FinishCDN(id, total, true)
	m.metrics.CacheHit.Inc()
	return Result{OK: true, RealMd5: meta.RealMd5, FileLength: meta.FileLength, PieceTotal: total}, true
}

// cachedDigests returns the piece md5s (empty where not computed yet) and
// BLAKE3 digests of a complete cache file, from its sidecars, keyed by the
// meta's content key. A cache written before the key (or whose .blake3
// sidecar is missing or stale) is scanned once, with md5, and must find
// every piece and the recorded file md5: its digests are never left empty
// nor taken from anything but the bytes on disk, and the sidecars and the
// key are rewritten. ok is false for a damaged file.
func (m *Manager) cachedDigests(id string, meta *store.Meta, total int) ([]string, []digest.Digest, bool) {
	if meta.Blake3 != "" {
		blake3s, err := m.store.ReadBlake3(id, meta.Blake3)
		if err == nil && len(blake3s) == total && contentKey(blake3s) == meta.Blake3 {
			md5s, merr := m.store.ReadMd5(id, meta.Blake3)
			if merr != nil || len(md5s) != total {
				md5s = make([]string, total)
			}
			return md5s, blake3s, true
		}
	}
	if meta.RealMd5 == "" {
		// Nothing left to check a scan against.
		return nil, nil, false
	}
	p, perr := m.scanPrefix(id, meta.PieceSize, -1, &fileSums{digest.NewWhole(true, false)}, true, nil)
	if perr != nil || p.count != total || p.sums.Md5Hex() != meta.RealMd5 {
		return nil, nil, false
	}
	meta.Blake3 = contentKey(p.blake3s)
	if err := m.store.WriteBlake3(id, p.blake3s, meta.Blake3); err != nil {
		m.log.WithError(err).Warnf("rewrite blake3 of %s", id)
	}
	if err := m.store.WriteMd5(id, p.md5s, meta.Blake3); err != nil {
		m.log.WithError(err).Warnf("rewrite md5 of %s", id)
	}
	return p.md5s, p.blake3s, true
}
