// Package cdn fetches a task's file from its source once, writes it into the
// supernode's cache in the wrapped piece format with a BLAKE3 digest per
// piece, and reports each piece as soon as it is written and hashed so peers
// can start before the fetch ends. The md5s Dragonfly 1.x clients check are
// computed on demand; a whole-file md5 or sha256 only when the task expects
// one. A complete cached file is reused after a
// conditional request to the source; a half-fetched one resumes with Range.
// Both only with a strong validator (validators.go).
//
// One file per concern, as Dragonfly 1.x split its CDN:
//   - plan.go: what to ask the source (cache reuse, conditional request,
//     Range resume) and starting the fetch;
//   - fills.go: the cap on fills running at once, and the line of those
//     waiting for their turn;
//   - length.go: the length a waiting fill answers its registrations
//     with, probed from the source (or the cluster home) once;
//   - resume.go: what the cache already holds (reuse a complete file, keep
//     the valid prefix of a partial one);
//   - writer.go: the body cut into pieces, wrapped, hashed with BLAKE3 and
//     written by a pool of writers, while one hasher computes the
//     whole-file digests a task expects (sums.go), if any;
//   - cutter.go: reading the source body piece by piece (shared with the
//     source pattern), under the bandwidth limit and the stall watchdog;
//   - finalize.go: the length and digest checks, the sidecars and the
//     meta that close a fetch;
//   - lazymd5.go: the md5s Dragonfly 1.x clients check, computed on demand;
//   - cachefile.go: one task's in-memory state, what the piece server may
//     send of it;
//   - sourcehash.go: the source pattern, digests without a cache file;
//   - source.go: the guarded HTTP client and source errors;
//   - window.go: the range of a ranged task cut out of a source's 200;
//   - cluster.go: reading a task from its cluster home instead of the
//     origin, each piece checked against the home's BLAKE3;
//   - homewait.go: a member's fill whose home's own fill waits for a slot
//     waits for it without a slot, rather than read the origin too;
//   - memberresume.go: the switch from the home to the origin, from the
//     first byte not verified;
//   - validators.go: which ETag and Last-Modified may vouch for cached
//     bytes (strong ones: a date at least a second before the Date).
package cdn

//go:generate go tool mockgen -source=cdn.go -destination=mock_deps_test.go -package=cdn -exclude_interfaces=Store

import (
	"context"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/gate"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
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
	WriteBlake3(taskID string, pieces []digest.Digest, fileMd5 string) error
	ReadBlake3(taskID, want string) ([]digest.Digest, error)
	Remove(taskID string) error
	CreateJournal(taskID, key string, recs []store.PieceRecord) (*store.Journal, error)
	ReadJournal(taskID, key string, pieces int) ([]store.PieceRecord, error)
	RemoveJournal(taskID string) error
}

// Damage learns of a cache file the CDN found damaged when it read it back
// (to compute an md5 for a Dragonfly 1.x client): the wrapped bytes
// wrappedRange ("start-end") of the task's file no longer match their
// BLAKE3 digest, or are gone. Such a client never takes the piece, so it
// never reports it: the supernode must drop the cache itself.
type Damage interface {
	CacheDamaged(taskID, wrappedRange string)
}

// Source describes what to fetch for a task.
type Source struct {
	TaskID     string
	RawURL     string
	TaskURL    string
	Headers    map[string]string
	Md5        string
	Identifier string
	// Digest is the expected sha256 of the whole file (zero: none). It is
	// not part of the task's identity: the registration that starts a
	// fetch sets the check.
	Digest   digest.Digest
	Insecure bool
	RootCAs  [][]byte
	// Via is the cluster member to read the file from (its home), or ""
	// for the origin (see cluster.go).
	Via string
	// Wanted, when set, is asked once a fill that waited for its turn
	// (fills.go) gets a slot, and while it waits for its home's fill
	// (homewait.go): false (nobody is left to download the file) ends the
	// fill there, without reading its source.
	Wanted func() bool
	// HomeNow, when set, is the member the task would be read from now
	// (as Via was chosen), asked while a fill waits for its home's fill: an
	// answer other than Via sends the fill to the origin.
	HomeNow func() string
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
	// Cluster is how to reach other members of the cluster.
	Cluster ClusterConfig
	// Damage is told of damage found on reading a cache file back (nil:
	// only logged).
	Damage Damage
	// MaxFills caps the fills running at once (fills.go); 0 means
	// DefaultMaxFills.
	MaxFills int
}

// Metrics are the CDN collectors (any may be nil: New fills it with an
// unread one).
type Metrics struct {
	CacheHit       prometheus.Counter
	Download       prometheus.Counter
	DownloadBytes  prometheus.Counter
	DownloadFailed prometheus.Counter
	SourceFailures prometheus.Counter
	// ClusterBytes counts the bytes read from other members, beside
	// DownloadBytes from the origin.
	ClusterBytes prometheus.Counter
	// ClusterFallbacks counts member reads that went to the origin, by
	// reason.
	ClusterFallbacks *prometheus.CounterVec
	// Md5OnDemand counts md5s computed for clients that check md5 (a
	// piece's or a whole file's), each read back from the cache.
	Md5OnDemand prometheus.Counter
	// Fills and FillsWaiting are the fills running and those waiting for
	// their turn (Config.MaxFills); FillsWaitingHome those that gave their
	// slot back to wait for their cluster home's fill (homewait.go).
	Fills, FillsWaiting, FillsWaitingHome prometheus.Gauge
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
	// members is the client of cluster fetches; viaMember maps a task ID
	// to the member its running fetch reads from, or whose fill it waits
	// for (homewait.go).
	members   *http.Client
	viaMember sync.Map
	fills     *gate.Gate
	// homeWait bounds a fill's wait for its home's fill (homewait.go),
	// homePoll is how often it asks the member (homeWaitBound and
	// homePollEvery; tests shorten them).
	homeWait, homePoll time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	files map[string]*cacheFile
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
	mx.CacheHit = metrics.OrCounter(mx.CacheHit)
	mx.Download = metrics.OrCounter(mx.Download)
	mx.DownloadBytes = metrics.OrCounter(mx.DownloadBytes)
	mx.DownloadFailed = metrics.OrCounter(mx.DownloadFailed)
	mx.SourceFailures = metrics.OrCounter(mx.SourceFailures)
	mx.ClusterBytes = metrics.OrCounter(mx.ClusterBytes)
	mx.ClusterFallbacks = metrics.OrCounterVec(mx.ClusterFallbacks, "reason")
	if cfg.Cluster.DialTimeout <= 0 {
		cfg.Cluster.DialTimeout = time.Second
	}
	mx.Md5OnDemand = metrics.OrCounter(mx.Md5OnDemand)
	mx.Fills, mx.FillsWaiting = metrics.OrGauge(mx.Fills), metrics.OrGauge(mx.FillsWaiting)
	mx.FillsWaitingHome = metrics.OrGauge(mx.FillsWaitingHome)
	if cfg.MaxFills <= 0 {
		cfg.MaxFills = DefaultMaxFills
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, store: st, progress: p, metrics: mx, log: log,
		http: newClient(cfg, nil), members: newMemberClient(cfg), fills: gate.New(cfg.MaxFills, mx.Fills, mx.FillsWaiting),
		ctx: ctx, cancel: cancel, files: map[string]*cacheFile{}, homeWait: homeWaitBound, homePoll: homePollEvery,
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

// setFile makes cf the task's file, stopping the fetch of the one before
// and waiting for its end: two fetches never write one path at once.
func (m *Manager) setFile(id string, cf *cacheFile) {
	m.mu.Lock()
	old := m.files[id]
	m.files[id] = cf
	m.mu.Unlock()
	// Outside m.mu: the piece server's reads of the map do not wait for it.
	old.stop()
}

// stopFile stops the running fetch of a task, if any, and waits for its
// end, so that a fetch starting reads the cache, and resets the task's
// progress, only once the last one wrote its last.
func (m *Manager) stopFile(id string) {
	m.file(id).stop()
}

// whileCurrent runs write while cf is still the task's file, under m.mu
// so that Delete cannot drop it, and remove its files, meanwhile: a write
// for a file dropped since would make a sidecar or meta for a task deleted,
// which no GC removes. It reports whether write ran.
func (m *Manager) whileCurrent(id string, cf *cacheFile, write func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files[id] != cf {
		return false
	}
	write()
	return true
}

func (m *Manager) file(id string) *cacheFile {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[id]
}

// PieceDigest is the BLAKE3 digest of a written piece, over the same bytes
// as its PieceMd5 (zero when unknown).
func (m *Manager) PieceDigest(taskID string, num int) digest.Digest {
	cf := m.file(taskID)
	if cf == nil {
		return digest.Digest{}
	}
	return cf.blake3(num)
}

// Span is where a written piece lies in its task's cache file (in the
// source pattern: in the source) and its BLAKE3 digest.
type Span struct {
	Num    int
	Offset int64
	Length int64 // the piece's own length: the last one may be short
	// PieceSize is the task's piece size: a piece offered while the
	// length was unknown has the range of a whole piece even if short.
	PieceSize int32
	Digest    digest.Digest
}

// PieceAt is the span of the written piece starting at offset off; ok is
// false when no piece the CDN wrote starts there.
func (m *Manager) PieceAt(taskID string, off int64) (Span, bool) {
	cf := m.file(taskID)
	if cf == nil || off < 0 {
		return Span{}, false
	}
	cf.mu.Lock()
	defer cf.mu.Unlock()
	ps := int64(cf.pieceSize)
	if ps <= 0 || off%ps != 0 || off/ps >= int64(len(cf.blake3s)) || off/ps >= int64(len(cf.lens)) {
		return Span{}, false
	}
	num := int(off / ps)
	if !cf.ready.Test(uint(num)) || cf.blake3s[num].IsZero() || cf.lens[num] <= 0 {
		return Span{}, false
	}
	return Span{Num: num, Offset: off, Length: int64(cf.lens[num]), PieceSize: cf.pieceSize, Digest: cf.blake3s[num]}, true
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
	cf := m.file(taskID)
	if cf == nil {
		meta, err := m.store.ReadMeta(taskID)
		if err != nil || !meta.Finish || !meta.Success {
			return 0, ServeNotFound
		}
		return meta.FileLength, ServeOK
	}
	return cf.servable(start, end)
}

// Wait blocks until the task's running CDN ends or ctx is done.
func (m *Manager) Wait(ctx context.Context, taskID string) error {
	cf := m.file(taskID)
	if cf == nil {
		return nil
	}
	select {
	case <-cf.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delete forgets a task's in-memory state, stopping its fetch; full also
// removes its cache files.
func (m *Manager) Delete(taskID string, full bool) error {
	m.mu.Lock()
	cf := m.files[taskID]
	delete(m.files, taskID)
	m.mu.Unlock()
	cf.stop()
	if full {
		return m.store.Remove(taskID)
	}
	return nil
}

// Running reports whether the task's CDN fetch is in progress.
func (m *Manager) Running(taskID string) bool {
	cf := m.file(taskID)
	return cf != nil && cf.running()
}
