package cdn

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/fileio"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// run fetches the body into the task's cache file: it keeps the pieces a
// resume found, writes the rest with the writer pool, and finalizes.
func (m *Manager) run(ctx context.Context, cancel context.CancelFunc, src Source, resp *http.Response, meta *store.Meta, resume *prefix, cf *cacheFile) Result {
	id := src.TaskID
	defer resp.Body.Close()
	start := time.Now()
	f, err := m.store.OpenData(id, resume == nil)
	if err != nil {
		return m.failMeta(id, cf, meta, err, false)
	}
	defer f.Close()
	// The file's length stays what the pieces written make it: a resume
	// reads it to find the pieces already there.
	if err := fileio.Reserve(f, piece.WrappedLength(meta.HTTPFileLen, meta.PieceSize), true); err != nil {
		return m.failMeta(id, cf, meta, err, false)
	}
	sums, first, err := m.keepPrefix(f, src, cf, meta.PieceSize, resume)
	if err != nil {
		return m.failMeta(id, cf, meta, err, false)
	}
	jr := m.startJournal(id, meta, resume)
	defer jr.Close()
	cut, err := m.writeBody(ctx, cancel, src, resp.Body, f, cf, meta, sums, first, jr)
	if err != nil {
		return m.failMeta(id, cf, meta, err, false)
	}
	return m.finalize(src, meta, cf, sums, cut.num, cut.off, start)
}

// startJournal starts the fill's journal with the pieces kept. Without one
// the fill goes on, but cannot be resumed: a journal left by an earlier
// fetch is removed, so no record outlives the bytes it describes.
func (m *Manager) startJournal(id string, meta *store.Meta, resume *prefix) *store.Journal {
	jr, err := m.store.CreateJournal(id, journalKey(meta), resume.records())
	if err != nil {
		m.log.WithField("task", id).WithError(err).Warn("no resume journal")
		if rerr := m.store.RemoveJournal(id); rerr != nil {
			m.log.WithField("task", id).WithError(rerr).Warn("remove stale journal")
		}
		return nil
	}
	return jr
}

// writeBody cuts the body into pieces from piece first on and writes them
// with the writer pool; sums go on with their content. It returns the
// cutter, which tells the piece count and content length, once every piece
// is written and hashed. The first write error stops the read at once (a
// full disk must not cost the rest of a 100 GB source) and is the fill's
// error; a stall, or a read error before any write failed, wins over it.
func (m *Manager) writeBody(ctx context.Context, cancel context.CancelFunc, src Source, r io.Reader, f *os.File,
	cf *cacheFile, meta *store.Meta, sums *fileSums, first int, jr *store.Journal) (*cutter, error) {
	ps := meta.PieceSize
	w := m.startWriters(src.TaskID, f, cf, ps, bufferSize(meta.HTTPFileLen, ps), sums, jr, cancel)
	body := m.watchBody(ctx, cancel, r)
	cut := &cutter{body: body, url: src.RawURL, size: piece.ContentSize(ps), length: meta.HTTPFileLen,
		num: first, off: piece.ContentOffset(first, ps)}
	rerr := w.feed(ctx, cut)
	werr := w.wait()
	if serr := body.stop(m, src.RawURL); serr != nil {
		rerr = serr
	}
	// No fsync of the data: the page cache survives a process restart, and
	// a resume after a power loss keeps only pieces whose bytes on disk hash
	// to their journal record (resumable). Syncing 1 GiB would double the
	// CDN time.
	if rerr != nil {
		return nil, rerr
	}
	if werr != nil {
		return nil, fmt.Errorf("fill stopped after %d source bytes: %w", cut.off, werr)
	}
	return cut, nil
}

// bufferSize is the size of a fill's piece buffers: a piece, or the whole
// wrapped file when it is shorter. A 1000-byte file has a 4 MiB piece
// size; its buffers need not.
func bufferSize(length int64, ps int32) int {
	if wrapped := piece.WrappedLength(length, ps); wrapped >= 0 && wrapped < int64(ps) {
		return int(wrapped)
	}
	return int(ps)
}

type job struct {
	num  int
	buf  []byte
	n    int
	refs *atomic.Int32 // the writer and the file hasher (if any) release buf
}

// writers wrap, hash and write the pieces the reader cuts. The whole-file
// digests, when a task needs any, run beside the reader so reading the
// socket never waits for hashing; pieces reach them in order.
type writers struct {
	m     *Manager
	id    string
	f     *os.File
	cf    *cacheFile
	ps    int32
	jobs  chan job
	hashq chan job
	// pool holds the free piece buffers, at most cap(pool); made counts
	// the buffers made so far (the feeder's alone), of bufSize bytes.
	pool    chan []byte
	made    int
	bufSize int
	hashed  chan struct{}
	wg      sync.WaitGroup
	// Writes go one at a time: concurrent writers to one file wait on
	// the inode lock in the kernel by spinning on the CPU that the other
	// workers need for their hashing.
	wmu     sync.Mutex
	errOnce sync.Once
	err     error
	// failed is closed with the first write error: the feeder stops
	// cutting, and writers and hasher drain the queued pieces without
	// touching them. stop cancels the fetch, so a read blocked on the
	// source returns and the body is closed.
	failed chan struct{}
	stop   context.CancelFunc
	// journal records each piece written, under wmu (nil: none).
	journal *store.Journal
}

func (m *Manager) startWriters(id string, f *os.File, cf *cacheFile, ps int32, bufSize int, sums *fileSums,
	jr *store.Journal, stop context.CancelFunc) *writers {
	n := m.cfg.Workers
	w := &writers{m: m, id: id, f: f, cf: cf, ps: ps, jobs: make(chan job, n), pool: make(chan []byte, n*2+1),
		bufSize: bufSize, hashed: make(chan struct{}), journal: jr, failed: make(chan struct{}), stop: stop}
	if sums.Active() {
		w.hashq = make(chan job, n*2+1)
		go func() {
			defer close(w.hashed)
			for j := range w.hashq {
				if !w.stopped() {
					_, _ = sums.Write(j.buf[piece.HeadSize : piece.HeadSize+j.n])
				}
				w.release(j)
			}
		}()
	} else {
		close(w.hashed)
	}
	for range n {
		w.wg.Add(1)
		go w.work()
	}
	return w
}

func (w *writers) release(j job) {
	if j.refs.Add(-1) == 0 {
		w.pool <- j.buf
	}
}

func (w *writers) work() {
	defer w.wg.Done()
	for j := range w.jobs {
		if w.stopped() {
			w.release(j)
			continue
		}
		wrapped := piece.WrapInPlace(j.buf, j.n, w.ps)
		// The BLAKE3 of the wrapped piece while it is in memory; its md5
		// is computed only if a Dragonfly 1.x client asks for it
		// (lazymd5.go), from the file, checked against this digest.
		b3 := digest.Sum(digest.BLAKE3, wrapped)
		w.wmu.Lock()
		_, err := fileio.WriteAt(w.f, wrapped, int64(j.num)*int64(w.ps))
		if err == nil {
			w.record(j.num, len(wrapped), b3)
		}
		w.wmu.Unlock()
		if err != nil {
			w.fail(fmt.Errorf("write piece %d of %s: %w", j.num, w.id, err))
		} else {
			w.m.setReady(w.id, w.cf, j.num, "", len(wrapped), b3)
		}
		w.release(j)
	}
}

// fail records the first write error and stops the fill.
func (w *writers) fail(err error) {
	w.errOnce.Do(func() {
		w.err = err
		close(w.failed)
		w.stop()
	})
}

// stopped reports whether a write failed.
func (w *writers) stopped() bool {
	select {
	case <-w.failed:
		return true
	default:
		return false
	}
}

// record journals a written piece; w.wmu is held. A journal that fails
// stops taking records and the fill goes on: only a resume loses from it.
func (w *writers) record(num, n int, b3 digest.Digest) {
	if w.journal == nil {
		return
	}
	if err := w.journal.Append(store.PieceRecord{Num: num, Len: n, Blake3: b3}); err != nil {
		w.m.log.WithField("task", w.id).WithError(err).Warn("resume journal")
		w.journal = nil
	}
}

// feed cuts the body into pieces and queues them until the body ends or
// fails, or a write fails. A piece of a failed read is never queued, so
// never ready. After a write failed it returns nil: the read error it may
// see is the cancellation that failure caused, and wait returns the cause.
func (w *writers) feed(ctx context.Context, cut *cutter) error {
	for !cut.ended {
		buf, err := w.take(ctx)
		if buf == nil {
			return err
		}
		// The pool and the failure may be ready together.
		if w.stopped() {
			w.pool <- buf
			return nil
		}
		num, n, ok, err := cut.next(buf[piece.HeadSize:])
		if err != nil || !ok {
			w.pool <- buf
			if w.stopped() {
				return nil
			}
			return err
		}
		j := job{num: num, buf: buf, n: n, refs: new(atomic.Int32)}
		j.refs.Store(1)
		if w.hashq != nil {
			j.refs.Store(2)
			w.hashq <- j
		}
		w.jobs <- j
	}
	return nil
}

// take returns a free piece buffer: one from the pool, else a new one
// while fewer than the pool holds were made, else the next one released.
// Made only when none is free, the buffers are as many as the pieces in
// flight: a source that trickles holds one, whatever the bound. It returns
// nil when the fill stopped, with the error feed returns.
func (w *writers) take(ctx context.Context) ([]byte, error) {
	select {
	case buf := <-w.pool:
		return buf, nil
	default:
	}
	if w.made < cap(w.pool) {
		w.made++
		return make([]byte, w.bufSize), nil
	}
	select {
	case buf := <-w.pool:
		return buf, nil
	case <-w.failed:
		return nil, nil
	case <-ctx.Done():
		if w.stopped() {
			return nil, nil
		}
		return nil, ctx.Err()
	}
}

// wait stops the writers and the hasher and returns the first write error.
func (w *writers) wait() error {
	close(w.jobs)
	if w.hashq != nil {
		close(w.hashq)
	}
	w.wg.Wait()
	<-w.hashed
	return w.err
}
