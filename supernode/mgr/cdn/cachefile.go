package cdn

import (
	"context"
	"sync"

	"github.com/bits-and-blooms/bitset"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// cacheFile is what the supernode knows in memory of one task's cache
// file: the pieces written so far with their digests, and how the fetch
// ended. A source-pattern task has one too, without a file on disk: its
// digests are of plain ranges of the source.
type cacheFile struct {
	mu        sync.Mutex
	pieceSize int32
	ready     *bitset.BitSet
	// md5s are the pieces' "md5:len", over the same bytes as blake3s. In
	// the cdn pattern they are computed on first demand (lazymd5.go), so
	// a ready piece may have none yet; in the source pattern, with its
	// BLAKE3.
	md5s []string
	// blake3s are the pieces' BLAKE3 digests: a piece that is ready has one.
	blake3s []digest.Digest
	// lens are the pieces' lengths (wrapped, or plain for the source
	// pattern), set with md5s, so Servable needs no parse of "md5:len".
	lens       []int32
	done, ok   bool
	wrappedLen int64
	// source is a source-pattern task: digests only, no cache file.
	source bool
	// waiting is a fill that waits for its turn (fills.go) or for its
	// cluster home's fill (homewait.go).
	waiting  bool
	cancel   context.CancelFunc
	finished chan struct{}
	// exited is closed once the fetch has made its last write and sent
	// its last progress event, after finished (its end is reported after
	// the file is marked ended).
	exited chan struct{}
	lazy   lazyMd5
}

// newCacheFile is the state of a fetch that starts with no piece ready;
// total sizes the bitset when the piece count is known (else 0).
func newCacheFile(pieceSize int32, total int, cancel context.CancelFunc) *cacheFile {
	return &cacheFile{pieceSize: pieceSize, ready: bitset.New(uint(total)), cancel: cancel,
		finished: make(chan struct{}), exited: make(chan struct{}), wrappedLen: -1}
}

// stop cancels a running fetch and waits until it has exited (nil, or a
// file with no fetch: nothing to stop): it writes nothing more, and sends
// no more progress events.
func (cf *cacheFile) stop() {
	if cf == nil || cf.cancel == nil {
		return
	}
	cf.cancel()
	<-cf.exited
}

// setReady records a piece's digests and only then offers the piece, so no
// peer is ever sent to a piece whose digest the supernode does not know.
// n is the piece's length, the one sum ends with.
func (m *Manager) setReady(id string, cf *cacheFile, num int, sum string, n int, b3 digest.Digest) {
	cf.mu.Lock()
	for len(cf.md5s) <= num {
		cf.md5s = append(cf.md5s, "")
		cf.blake3s = append(cf.blake3s, digest.Digest{})
		cf.lens = append(cf.lens, 0)
	}
	cf.md5s[num], cf.blake3s[num], cf.lens[num] = sum, b3, int32(n)
	cf.ready.Set(uint(num))
	cf.mu.Unlock()
	m.progress.SetCDNPiece(id, num)
}

// close marks the fetch ended (ok with wrappedLen bytes on disk) and wakes
// the waiters.
func (cf *cacheFile) close(ok bool, wrappedLen int64) {
	cf.mu.Lock()
	cf.done, cf.ok = true, ok
	if ok {
		cf.wrappedLen = wrappedLen
	}
	cf.mu.Unlock()
	close(cf.finished)
}

// reused fills a tracked file from a complete cache and ends it: every
// piece ready with its digests (md5s may have blanks, computed on demand),
// and the content key and the whole-file md5 (if known) of its meta. The
// file's fetch, if any, closes exited itself.
func (cf *cacheFile) reused(path string, md5s []string, blake3s []digest.Digest, meta *store.Meta) {
	cf.mu.Lock()
	cf.md5s, cf.blake3s, cf.lens = md5s, blake3s, make([]int32, len(blake3s))
	for i := range cf.lens {
		cf.lens[i] = int32(min(int64(cf.pieceSize), meta.FileLength-int64(i)*int64(cf.pieceSize)))
		cf.ready.Set(uint(i))
	}
	cf.lazy = lazyMd5{path: path, key: meta.Blake3, fileMd5: meta.RealMd5}
	cf.mu.Unlock()
	cf.close(true, meta.FileLength)
}

// blake3 is the BLAKE3 digest of piece num (zero when unknown).
func (cf *cacheFile) blake3(num int) digest.Digest {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if num < 0 || num >= len(cf.blake3s) {
		return digest.Digest{}
	}
	return cf.blake3s[num]
}

// digests copies the md5 and BLAKE3 digests of the first total pieces.
func (cf *cacheFile) digests(total int) ([]string, []digest.Digest) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return append([]string(nil), cf.md5s[:total]...), append([]digest.Digest(nil), cf.blake3s[:total]...)
}

func (cf *cacheFile) isWaiting() bool {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return cf.waiting
}

func (cf *cacheFile) setWaiting(w bool) {
	cf.mu.Lock()
	cf.waiting = w
	cf.mu.Unlock()
}

func (cf *cacheFile) running() bool {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return !cf.done
}

// servable is Manager.Servable for a file the CDN tracks.
func (cf *cacheFile) servable(start, end int64) (int64, int) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if cf.source {
		return 0, ServeNotFound
	}
	if cf.done {
		if !cf.ok {
			return 0, ServeNotFound
		}
		return cf.wrappedLen, ServeOK
	}
	if start < 0 || end < start {
		return 0, ServeNotReady
	}
	ps := int64(cf.pieceSize)
	last := end / ps
	for i := start / ps; i <= last; i++ {
		if !cf.ready.Test(uint(i)) {
			return 0, ServeNotReady
		}
	}
	wl := int64(cf.lens[last])
	if end >= last*ps+wl && wl == ps {
		return 0, ServeNotReady // beyond a full piece: the next one is not written yet
	}
	// A short piece is the final one; a range past it is clipped to it.
	return last*ps + wl, ServeOK
}
