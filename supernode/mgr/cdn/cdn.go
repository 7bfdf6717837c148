// Package cdn fetches a task's file from its source once, writes it into the
// supernode's cache in the wrapped piece format with per-piece and whole-file
// md5s, and reports each piece as soon as it is on disk so peers can start
// before the fetch ends. A complete cached file is reused after a
// conditional request to the source; a half-fetched one resumes with Range.
package cdn

//go:generate go tool mockgen -source=cdn.go -destination=mock_deps_test.go -package=cdn

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bits-and-blooms/bitset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/pkg/fileio"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// Progress receives the CDN's piece events.
type Progress interface {
	ResetCDN(taskID string)
	SetCDNPiece(taskID string, num int)
	FinishCDN(taskID string, total int, ok bool)
}

// Store is the cache storage the CDN writes to.
type Store interface {
	OpenData(taskID string, truncate bool) (*os.File, error)
	DataPath(taskID string) string
	ReadMeta(taskID string) (*store.Meta, error)
	WriteMeta(m *store.Meta) error
	WriteMd5(taskID string, pieceMd5s []string, fileMd5 string) error
	ReadMd5(taskID, want string) ([]string, error)
	Remove(taskID string) error
}

// Source describes what to fetch for a task.
type Source struct {
	TaskID     string
	RawURL     string
	TaskURL    string
	Headers    map[string]string
	Md5        string
	Identifier string
	Insecure   bool
	RootCAs    [][]byte
}

// Started is what is known once the source answered.
type Started struct {
	HTTPFileLength int64 // -1 when unknown
	PieceSize      int32
	CacheHit       bool
}

// Result is the outcome of one CDN run.
type Result struct {
	OK         bool
	RealMd5    string
	FileLength int64 // wrapped length on disk
	PieceTotal int
	Err        error
}

// Config of the manager.
type Config struct {
	Limit         int64 // bytes/s from sources; 0 = unlimited
	SourceTimeout time.Duration
	Workers       int
	// SourceAllow, when not empty, limits redirects to these hosts, so an
	// allowed source cannot send the CDN elsewhere.
	SourceAllow []string
}

// Metrics are the CDN collectors (any may be nil).
type Metrics struct {
	CacheHit       prometheus.Counter
	Download       prometheus.Counter
	DownloadBytes  prometheus.Counter
	DownloadFailed prometheus.Counter
	SourceFailures prometheus.Counter
}

type fileState struct {
	mu         sync.Mutex
	pieceSize  int32
	ready      *bitset.BitSet
	md5s       []string
	done, ok   bool
	wrappedLen int64
	// source is a source-pattern task: digests only, no cache file.
	source   bool
	cancel   context.CancelFunc
	finished chan struct{}
}

// Manager runs CDN fetches. Close stops them and waits.
type Manager struct {
	cfg      Config
	store    Store
	progress Progress
	metrics  Metrics
	http     *http.Client
	limiter  *xrate.Limiter
	log      logrus.FieldLogger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	files map[string]*fileState
}

const readChunk = 256 << 10

// New returns a manager.
func New(cfg Config, st Store, p Progress, mx Metrics, log logrus.FieldLogger) *Manager {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.SourceTimeout <= 0 {
		cfg.SourceTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, store: st, progress: p, metrics: mx, log: log,
		http: newClient(cfg, nil),
		ctx:  ctx, cancel: cancel, files: map[string]*fileState{},
	}
	if cfg.Limit > 0 {
		m.limiter = xrate.NewLimiter(xrate.Limit(cfg.Limit), max(readChunk, int(min(cfg.Limit, 1<<30))))
	}
	return m
}

// Close cancels running fetches and waits until their files and metadata
// are flushed (a later start resumes them).
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// Start begins the CDN of a task: it returns once the source has answered
// (or the cache was validated) and continues the body in the background;
// done is called exactly once, from another goroutine, with the result.
func (m *Manager) Start(src Source, done func(Result)) (Started, error) {
	if m.ctx.Err() != nil {
		return Started{}, errors.New("cdn manager is closed")
	}
	id := src.TaskID
	m.progress.ResetCDN(id)
	meta, err := m.store.ReadMeta(id)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.WithError(err).Warnf("ignore unreadable cache meta of %s", id)
	}
	same := err == nil && meta.TaskID == id && meta.SameURL(src.TaskURL) && strings.EqualFold(meta.Md5, src.Md5) &&
		(src.Md5 != "" || meta.BizID == src.Identifier)
	_, userRange := src.Headers["Range"]

	ctx, cancel := context.WithCancel(m.ctx)
	var resume *prefix
	extra := map[string]string{}
	switch {
	case same && meta.Finish && meta.Success:
		if meta.ETag == "" && meta.LastModified == 0 {
			break // cannot validate: refetch, as v1
		}
		if meta.ETag != "" {
			extra["If-None-Match"] = meta.ETag
		}
		if meta.LastModified != 0 {
			extra["If-Modified-Since"] = time.UnixMilli(meta.LastModified).UTC().Format(http.TimeFormat)
		}
	case same && !meta.Finish && meta.HTTPFileLen > 0 && !userRange && (meta.ETag != "" || meta.LastModified != 0):
		p, perr := m.scanPrefix(id, meta.PieceSize, meta.HTTPFileLen)
		if perr != nil || p.count == 0 {
			break
		}
		resume = p
		extra["Range"] = "bytes=" + strconv.FormatInt(piece.ContentOffset(p.count, meta.PieceSize), 10) + "-" +
			strconv.FormatInt(meta.HTTPFileLen-1, 10)
		if meta.ETag != "" {
			extra["If-Range"] = meta.ETag
		} else {
			extra["If-Range"] = time.UnixMilli(meta.LastModified).UTC().Format(http.TimeFormat)
		}
	}
	resp, err := m.get(ctx, src, extra)
	if err != nil {
		cancel()
		return Started{}, err
	}
	if resp.StatusCode == http.StatusNotModified {
		resp.Body.Close()
		cancel()
		if _, ok := extra["If-None-Match"]; !ok && extra["If-Modified-Since"] == "" {
			return Started{}, &SourceError{URL: src.RawURL, Status: resp.StatusCode}
		}
		if st, ok := m.reuse(src, meta, done); ok {
			return st, nil
		}
		// The cache is unusable after all: fetch it whole.
		ctx, cancel = context.WithCancel(m.ctx)
		resp, err = m.get(ctx, src, nil)
		if err != nil {
			cancel()
			return Started{}, err
		}
	}
	if m.metrics.Download != nil {
		m.metrics.Download.Inc()
	}
	length := resp.ContentLength
	if resume != nil {
		if resp.StatusCode != http.StatusPartialContent || totalFromContentRange(resp.Header.Get("Content-Range")) != meta.HTTPFileLen {
			resume = nil // the source sent the whole file (changed or no range support)
		} else {
			length = meta.HTTPFileLen
		}
	}
	pieceSize := piece.ComputeSize(length)
	if resume != nil {
		pieceSize = meta.PieceSize
	}
	newMeta := &store.Meta{
		TaskID: id, URL: src.TaskURL, PieceSize: pieceSize, HTTPFileLen: length, BizID: src.Identifier,
		AccessTime: time.Now().UnixMilli(), Md5: src.Md5, LastModified: lastModifiedMillis(resp.Header),
		ETag: resp.Header.Get("ETag"),
	}
	if resume != nil {
		newMeta.ETag, newMeta.LastModified = meta.ETag, meta.LastModified
	}
	if err := m.store.WriteMeta(newMeta); err != nil {
		resp.Body.Close()
		cancel()
		return Started{}, err
	}
	state := &fileState{pieceSize: pieceSize, ready: bitset.New(0), cancel: cancel, finished: make(chan struct{}), wrappedLen: -1}
	m.setFile(id, state)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		res := m.run(ctx, cancel, src, resp, newMeta, resume, state)
		done(res)
	}()
	return Started{HTTPFileLength: length, PieceSize: pieceSize}, nil
}

func (m *Manager) setFile(id string, fs *fileState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.files[id]; old != nil && old.cancel != nil {
		old.cancel()
	}
	m.files[id] = fs
}

func (m *Manager) file(id string) *fileState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[id]
}

// reuse serves a validated complete cache file: piece md5s from the .md5
// sidecar (or by re-hashing the file), every piece ready at once.
func (m *Manager) reuse(src Source, meta *store.Meta, done func(Result)) (Started, bool) {
	id := src.TaskID
	total := piece.Count(meta.HTTPFileLen, meta.PieceSize)
	if meta.HTTPFileLen < 0 {
		total = int((meta.FileLength + int64(meta.PieceSize) - 1) / int64(meta.PieceSize))
	}
	md5s, err := m.store.ReadMd5(id, meta.RealMd5)
	if err != nil || len(md5s) != total {
		p, perr := m.scanPrefix(id, meta.PieceSize, -1)
		if perr != nil || p.count != total || hex.EncodeToString(p.fileMd5.Sum(nil)) != meta.RealMd5 {
			m.log.Warnf("cache of %s is damaged, refetching", id)
			return Started{}, false
		}
		md5s = p.md5s
		if err := m.store.WriteMd5(id, md5s, meta.RealMd5); err != nil {
			m.log.WithError(err).Warnf("rewrite md5 of %s", id)
		}
	}
	fi, err := os.Stat(m.store.DataPath(id))
	if err != nil || fi.Size() != meta.FileLength {
		m.log.Warnf("cache data of %s is missing or has the wrong size, refetching", id)
		return Started{}, false
	}
	now := time.Now().UnixMilli()
	meta.Interval = now - meta.AccessTime
	meta.AccessTime = now
	if err := m.store.WriteMeta(meta); err != nil {
		m.log.WithError(err).Warnf("update meta of %s", id)
	}
	fs := &fileState{pieceSize: meta.PieceSize, ready: bitset.New(uint(total)), md5s: md5s, done: true, ok: true,
		wrappedLen: meta.FileLength, finished: make(chan struct{})}
	for i := range total {
		fs.ready.Set(uint(i))
		m.progress.SetCDNPiece(id, i)
	}
	close(fs.finished)
	m.setFile(id, fs)
	m.progress.FinishCDN(id, total, true)
	if m.metrics.CacheHit != nil {
		m.metrics.CacheHit.Inc()
	}
	go done(Result{OK: true, RealMd5: meta.RealMd5, FileLength: meta.FileLength, PieceTotal: total})
	return Started{HTTPFileLength: meta.HTTPFileLen, PieceSize: meta.PieceSize, CacheHit: true}, true
}

// prefix is the valid leading pieces of a cache file.
type prefix struct {
	count   int
	md5s    []string
	fileMd5 hash.Hash
}

// scanPrefix reads the data file piece by piece and stops at the first
// piece whose header, length or tail is wrong. length < 0 scans to the end.
func (m *Manager) scanPrefix(id string, pieceSize int32, length int64) (*prefix, error) {
	f, err := os.Open(m.store.DataPath(id))
	if err != nil {
		return nil, fmt.Errorf("open cache of %s: %w", id, err)
	}
	defer f.Close()
	p := &prefix{fileMd5: md5.New()}
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
		p.fileMd5.Write(content)
		p.md5s = append(p.md5s, piece.Md5Value(buf[:n]))
		p.count++
		if n < len(buf) {
			break
		}
	}
	return p, nil
}

type job struct {
	num  int
	buf  []byte
	n    int
	refs *atomic.Int32 // the writer and the file hasher both release buf
}

// run reads the body, cuts it into pieces and writes them with a pool of
// writers; each written piece becomes ready at once.
func (m *Manager) run(ctx context.Context, cancel context.CancelFunc, src Source, resp *http.Response, meta *store.Meta, resume *prefix, fs *fileState) Result {
	id := src.TaskID
	defer resp.Body.Close()
	start := time.Now()
	fail := func(err error, final bool) Result {
		meta.Finish = final
		if werr := m.store.WriteMeta(meta); werr != nil {
			m.log.WithField("task", id).WithError(werr).Warn("write meta")
		}
		m.end(id, fs, 0, 0, err)
		return Result{Err: err}
	}
	f, err := m.store.OpenData(id, resume == nil)
	if err != nil {
		return fail(err, false)
	}
	defer f.Close()
	ps := meta.PieceSize
	fileMd5, first := md5.New(), 0
	if resume != nil {
		fileMd5, first = resume.fileMd5, resume.count
		if err := f.Truncate(int64(first) * int64(ps)); err != nil {
			return fail(fmt.Errorf("truncate cache of %s: %w", id, err), false)
		}
		for i, sum := range resume.md5s {
			m.setReady(id, fs, i, sum)
		}
	}
	w := m.startWriters(id, f, fs, ps, fileMd5)
	body := m.watchBody(ctx, cancel, resp.Body)
	cut := &cutter{body: body, url: src.RawURL, size: piece.ContentSize(ps), length: meta.HTTPFileLen,
		num: first, off: piece.ContentOffset(first, ps)}
	rerr := w.feed(ctx, cut)
	werr := w.wait()
	if serr := body.stop(m, src.RawURL); serr != nil {
		rerr = serr
	}
	// No fsync of the data: the page cache survives a process restart, and
	// a file torn by a power loss fails its piece md5s at the clients, whose
	// piece-error reports drop it. Syncing 1 GiB would double the CDN time.
	if rerr != nil {
		return fail(rerr, false)
	}
	if werr != nil {
		return fail(werr, false)
	}
	realMd5 := hex.EncodeToString(fileMd5.Sum(nil))
	if err := checkMd5(src, realMd5); err != nil {
		return fail(err, true)
	}
	total, contentLen := cut.num, cut.off
	wrappedLen := contentLen + int64(total)*piece.WrapSize
	fs.mu.Lock()
	md5s := append([]string(nil), fs.md5s[:total]...)
	fs.mu.Unlock()
	if err := m.store.WriteMd5(id, md5s, realMd5); err != nil {
		return fail(err, false)
	}
	meta.Finish, meta.Success, meta.RealMd5, meta.FileLength = true, true, realMd5, wrappedLen
	if meta.HTTPFileLen < 0 {
		meta.HTTPFileLen = contentLen
	}
	if err := m.store.WriteMeta(meta); err != nil {
		return fail(err, false)
	}
	m.end(id, fs, total, wrappedLen, nil)
	m.log.WithField("task", id).Infof("cdn done: %d bytes in %d pieces, %s", contentLen, total, time.Since(start).Round(time.Millisecond))
	return Result{OK: true, RealMd5: realMd5, FileLength: wrappedLen, PieceTotal: total}
}

// setReady records a piece's digest and only then offers the piece, so no
// peer is ever sent to a piece whose digest the supernode does not know.
func (m *Manager) setReady(id string, fs *fileState, num int, sum string) {
	fs.mu.Lock()
	for len(fs.md5s) <= num {
		fs.md5s = append(fs.md5s, "")
	}
	fs.md5s[num] = sum
	fs.ready.Set(uint(num))
	fs.mu.Unlock()
	m.progress.SetCDNPiece(id, num)
}

// end closes a file's run and reports it: err == nil is success with total
// pieces and wrappedLen bytes on disk.
func (m *Manager) end(id string, fs *fileState, total int, wrappedLen int64, err error) {
	fs.mu.Lock()
	fs.done, fs.ok = true, err == nil
	if err == nil {
		fs.wrappedLen = wrappedLen
	}
	fs.mu.Unlock()
	close(fs.finished)
	if err == nil {
		m.progress.FinishCDN(id, total, true)
		return
	}
	m.progress.FinishCDN(id, 0, false)
	if m.metrics.DownloadFailed != nil {
		m.metrics.DownloadFailed.Inc()
	}
	m.log.WithField("task", id).WithError(err).Warn("cdn failed")
}

// writers wrap, hash and write the pieces the reader cuts, while the
// whole-file md5 runs beside the reader so reading the socket never waits
// for hashing; pieces reach it in order.
type writers struct {
	m      *Manager
	id     string
	f      *os.File
	fs     *fileState
	ps     int32
	jobs   chan job
	hashq  chan job
	pool   chan []byte
	hashed chan struct{}
	wg     sync.WaitGroup
	// Writes go one at a time: concurrent writers to one file wait on
	// the inode lock in the kernel by spinning on the CPU that the other
	// workers need for their md5.
	wmu     sync.Mutex
	errOnce sync.Once
	err     error
}

func (m *Manager) startWriters(id string, f *os.File, fs *fileState, ps int32, fileMd5 hash.Hash) *writers {
	n := m.cfg.Workers
	w := &writers{m: m, id: id, f: f, fs: fs, ps: ps, jobs: make(chan job, n), hashq: make(chan job, n*2+1),
		pool: make(chan []byte, n*2+1), hashed: make(chan struct{})}
	for range n*2 + 1 {
		w.pool <- make([]byte, ps)
	}
	go func() {
		defer close(w.hashed)
		for j := range w.hashq {
			fileMd5.Write(j.buf[piece.HeadSize : piece.HeadSize+j.n])
			w.release(j)
		}
	}()
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
		wrapped := j.buf[:j.n+piece.WrapSize]
		h := piece.Header(j.n, w.ps)
		wrapped[0], wrapped[1], wrapped[2], wrapped[3] = byte(h>>24), byte(h>>16), byte(h>>8), byte(h)
		wrapped[len(wrapped)-1] = piece.TailChar
		sum := piece.Md5Value(wrapped)
		w.wmu.Lock()
		_, err := fileio.WriteAt(w.f, wrapped, int64(j.num)*int64(w.ps))
		w.wmu.Unlock()
		if err != nil {
			w.errOnce.Do(func() { w.err = fmt.Errorf("write piece %d of %s: %w", j.num, w.id, err) })
		} else {
			w.m.setReady(w.id, w.fs, j.num, sum)
		}
		w.release(j)
	}
}

// feed cuts the body into pieces and queues them until the body ends or
// fails. A piece of a failed read is never queued, so never ready.
func (w *writers) feed(ctx context.Context, cut *cutter) error {
	for !cut.ended {
		var buf []byte
		select {
		case buf = <-w.pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		num, n, ok, err := cut.next(buf[piece.HeadSize:])
		if err != nil || !ok {
			w.pool <- buf
			return err
		}
		j := job{num: num, buf: buf, n: n, refs: new(atomic.Int32)}
		j.refs.Store(2)
		w.hashq <- j
		w.jobs <- j
	}
	return nil
}

// wait stops the writers and the hasher and returns the first write error.
func (w *writers) wait() error {
	close(w.jobs)
	close(w.hashq)
	w.wg.Wait()
	<-w.hashed
	return w.err
}

// PieceMd5 is the "md5:len" of a written piece ("" when unknown).
func (m *Manager) PieceMd5(taskID string, num int) string {
	fs := m.file(taskID)
	if fs == nil {
		return ""
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if num < 0 || num >= len(fs.md5s) {
		return ""
	}
	return fs.md5s[num]
}

// Serve states of a cache file for the piece server.
const (
	ServeNotFound = iota // no usable cache file
	ServeNotReady        // the range is not completely written yet
	ServeOK              // serve [0, size) of the file
)

// Servable tells the piece server whether wrapped bytes [start, end] of a
// task's cache file may be sent, and the file size it may expose. A
// complete file is exposed whole (range errors are the HTTP layer's job);
// a file being written only up to fully written pieces, so no client ever
// reads a piece before it is complete. A task the CDN does not track (after
// a restart) is servable when its meta says finished and successful.
func (m *Manager) Servable(taskID string, start, end int64) (int64, int) {
	fs := m.file(taskID)
	if fs == nil {
		meta, err := m.store.ReadMeta(taskID)
		if err != nil || !meta.Finish || !meta.Success {
			return 0, ServeNotFound
		}
		return meta.FileLength, ServeOK
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.source {
		return 0, ServeNotFound
	}
	if fs.done {
		if !fs.ok {
			return 0, ServeNotFound
		}
		return fs.wrappedLen, ServeOK
	}
	if start < 0 || end < start {
		return 0, ServeNotReady
	}
	ps := int64(fs.pieceSize)
	last := end / ps
	for i := start / ps; i <= last; i++ {
		if !fs.ready.Test(uint(i)) {
			return 0, ServeNotReady
		}
	}
	wl, _ := strconv.Atoi(fs.md5s[last][len(piece.Md5OfValue(fs.md5s[last]))+1:])
	if end >= last*ps+int64(wl) && int64(wl) == ps {
		return 0, ServeNotReady // beyond a full piece: the next one is not written yet
	}
	// A short piece is the final one; a range past it is clipped to it.
	return last*ps + int64(wl), ServeOK
}

// Wait blocks until the task's running CDN ends or ctx is done.
func (m *Manager) Wait(ctx context.Context, taskID string) error {
	fs := m.file(taskID)
	if fs == nil {
		return nil
	}
	select {
	case <-fs.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delete forgets a task's in-memory state, stopping its fetch; full also
// removes its cache files.
func (m *Manager) Delete(taskID string, full bool) error {
	m.mu.Lock()
	fs := m.files[taskID]
	delete(m.files, taskID)
	m.mu.Unlock()
	if fs != nil && fs.cancel != nil {
		fs.cancel()
		<-fs.finished
	}
	if full {
		return m.store.Remove(taskID)
	}
	return nil
}

// Running reports whether the task's CDN fetch is in progress.
func (m *Manager) Running(taskID string) bool {
	fs := m.file(taskID)
	if fs == nil {
		return false
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return !fs.done
}
