package cdn

import (
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// finalize closes a fetch whose body was read and written whole: the
// content must match the digests the task expects, then the .blake3 and
// .md5 sidecars (the latter with the md5s computed so far, usually none)
// and the finished meta are written, and only then is the file complete.
func (m *Manager) finalize(src Source, meta *store.Meta, cf *cacheFile, sums *fileSums, total int, contentLen int64, start time.Time) Result {
	id := src.TaskID
	if err := sums.check(src); err != nil {
		return m.failMeta(id, cf, meta, err, true)
	}
	wrappedLen := contentLen + int64(total)*piece.WrapSize
	md5s, blake3s := cf.digests(total)
	key := contentKey(blake3s)
	if err := m.store.WriteBlake3(id, blake3s, key); err != nil {
		return m.failMeta(id, cf, meta, err, false)
	}
	// Written even when empty, so no sidecar of earlier content remains.
	if err := m.store.WriteMd5(id, md5s, key); err != nil {
		return m.failMeta(id, cf, meta, err, false)
	}
	realMd5 := sums.Md5Hex()
	meta.Finish, meta.Success, meta.RealMd5, meta.FileLength = true, true, realMd5, wrappedLen
	meta.Blake3, meta.Sha256 = key, sums.Sha256().String()
	if meta.HTTPFileLen < 0 {
		meta.HTTPFileLen = contentLen
	}
	if err := m.store.WriteMeta(meta); err != nil {
		return m.failMeta(id, cf, meta, err, false)
	}
	// Complete: nothing left to resume.
	m.dropJournal(id)
	cf.mu.Lock()
	cf.lazy.key, cf.lazy.fileMd5 = key, realMd5
	cf.mu.Unlock()
	m.end(id, cf, total, wrappedLen, nil)
	m.log.WithField("task", id).Infof("cdn done: %d bytes in %d pieces, %s", contentLen, total, time.Since(start).Round(time.Millisecond))
	return Result{OK: true, RealMd5: realMd5, FileLength: wrappedLen, PieceTotal: total}
}

// failMeta fails a fetch and records its meta: final marks a file that
// was fetched whole but is wrong (it is not resumed); otherwise a later
// start may resume it.
func (m *Manager) failMeta(id string, cf *cacheFile, meta *store.Meta, err error, final bool) Result {
	meta.Finish = final
	if werr := m.store.WriteMeta(meta); werr != nil {
		m.log.WithField("task", id).WithError(werr).Warn("write meta")
	}
	if final {
		m.dropJournal(id)
	}
	return m.fail(id, cf, err)
}

func (m *Manager) dropJournal(id string) {
	if err := m.store.RemoveJournal(id); err != nil {
		m.log.WithField("task", id).WithError(err).Warn("remove resume journal")
	}
}

// fail ends a fetch with err.
func (m *Manager) fail(id string, cf *cacheFile, err error) Result {
	m.end(id, cf, 0, 0, err)
	return Result{Err: err}
}

// end closes a file's run and reports it: err == nil is success with total
// pieces and wrappedLen bytes on disk.
func (m *Manager) end(id string, cf *cacheFile, total int, wrappedLen int64, err error) {
	cf.close(err == nil, wrappedLen)
	if err == nil {
		m.progress.FinishCDN(id, total, true)
		return
	}
	m.progress.FinishCDN(id, 0, false)
	m.metrics.DownloadFailed.Inc()
	m.log.WithField("task", id).WithError(err).Warn("cdn failed")
}
