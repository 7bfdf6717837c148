// Package pieceerror handles clients' reports of bad pieces served by the
// supernode: a missing cache file or a piece whose bytes no longer match
// its digest makes the task's cache be dropped, so the next registration
// fetches the source again. A report is a claim, not a proof: it counts
// only from a client of the task, and only the piece it names is checked,
// at its own offset and length, whatever range the report says.
package pieceerror

//go:generate go tool mockgen -source=pieceerror.go -destination=mock_deps_test.go -package=pieceerror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
)

// Clients is the (client, task) registry: only a registered client of the
// task may report about it, from the address it registered from.
type Clients interface {
	Caller(cid, taskID string, from netip.Addr) (dfgettask.Task, error)
}

// CDN gives the written piece starting at an offset: where it lies and its
// BLAKE3 digest, which the supernode always has for a piece it wrote (its
// md5 may not be computed).
type CDN interface {
	PieceAt(taskID string, off int64) (cdn.Span, bool)
}

// GC drops a task.
type GC interface {
	GCTask(taskID string, full bool)
}

// DataPath locates a cache file.
type DataPath func(taskID string) string

// Errors of Report.
var (
	ErrBusy          = errors.New("piece error queue is full")
	ErrUnknownClient = errors.New("not a client of the task")
)

// Config of the manager.
type Config struct {
	// SuperPID is the supernode's peer ID: only errors against it are
	// handled.
	SuperPID string
	// SourcePattern: peers fetch pieces from the source, and the
	// supernode has no cache file.
	SourcePattern bool
}

// Manager queues and handles piece errors.
type Manager struct {
	cfg     Config
	clients Clients
	cdn     CDN
	gc      GC
	path    DataPath
	log     logrus.FieldLogger
	queue   chan types.PieceErrorRequest
	hold    time.Duration

	mu sync.Mutex
	// handled is when each report (task, error type, range) was last
	// queued, to drop duplicates: keyed by report, not by task, so that a
	// client's bogus report cannot hold back a real one about another
	// piece, nor the CDN's own (CacheDamaged).
	handled map[string]time.Time
}

// New returns a manager.
func New(cfg Config, cl Clients, c CDN, gc GC, path DataPath, log logrus.FieldLogger) *Manager {
	return &Manager{cfg: cfg, clients: cl, cdn: c, gc: gc, path: path, log: log,
		queue: make(chan types.PieceErrorRequest, 100), hold: 3 * time.Second, handled: map[string]time.Time{}}
}

// Report enqueues an error, a call from address from; errors about peers
// other than the supernode are ignored (the scheduler's failure counts
// handle those). The reporter must be a registered client of the task,
// calling from the address it registered from; it is checked before the
// duplicate holds, so a stranger's report cannot hold back a client's. A
// client gets one report per task queued per hold, so one client cannot
// fill the queue and push out others' reports and the CDN's own.
func (m *Manager) Report(req types.PieceErrorRequest, from netip.Addr) error {
	if req.DstPid != m.cfg.SuperPID {
		return nil
	}
	if req.ErrorType != types.PieceErrorFileNotExist && req.ErrorType != types.PieceErrorFileMd5NotMatch {
		return fmt.Errorf("unknown piece error type %q", req.ErrorType)
	}
	if _, err := m.clients.Caller(req.SrcCid, req.TaskID, from); err != nil {
		return fmt.Errorf("%w: %w", ErrUnknownClient, err)
	}
	return m.enqueue(req, "client\x00"+req.TaskID+"\x00"+req.SrcCid)
}

// reportKey names what a report is about, for the duplicate hold: a
// missing file is one per task; a mismatch is one per range, as numbers
// (its spelling does not make another report: "0-9", "00-9" and "+0-9"
// are one).
func reportKey(req types.PieceErrorRequest) string {
	key := "report\x00" + req.TaskID + "\x00" + req.ErrorType
	if req.ErrorType == types.PieceErrorFileMd5NotMatch {
		s, e, err := piece.ParseRange(req.Range)
		if err != nil {
			s, e = -1, -1 // Handle ignores it: one key for every bad range
		}
		key += "\x00" + strconv.FormatInt(s, 10) + "-" + strconv.FormatInt(e, 10)
	}
	return key
}

// enqueue queues a checked report, unless the same report (reportKey), or
// any report under the extra key (a client's), was queued within the hold.
// A report the full queue refused holds nothing back.
func (m *Manager) enqueue(req types.PieceErrorRequest, extra ...string) error {
	keys := append([]string{reportKey(req)}, extra...)
	now := time.Now()
	m.mu.Lock()
	for _, k := range keys {
		if t, ok := m.handled[k]; ok && now.Sub(t) < m.hold {
			m.mu.Unlock()
			return nil
		}
	}
	for _, k := range keys {
		m.handled[k] = now
	}
	m.mu.Unlock()
	select {
	case m.queue <- req:
		return nil
	default:
		m.mu.Lock()
		for _, k := range keys {
			if m.handled[k] == now {
				delete(m.handled, k)
			}
		}
		m.mu.Unlock()
		return ErrBusy
	}
}

// CacheDamaged is the supernode's own report of damage it found in a
// task's cache file (the wrapped bytes wrappedRange fail their digest): a
// Dragonfly 1.x client is never offered such a piece, so never reports it.
// It takes the path of a client's report past the reporter check (the
// supernode is no client): checked against the file, then the task is
// dropped.
func (m *Manager) CacheDamaged(taskID, wrappedRange string) {
	req := types.PieceErrorRequest{TaskID: taskID, DstPid: m.cfg.SuperPID, ErrorType: types.PieceErrorFileMd5NotMatch,
		Range: wrappedRange}
	if err := m.enqueue(req); err != nil {
		m.log.WithError(err).Warnf("damage of %s's cache not queued", taskID)
	}
}

// Run handles queued errors until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-m.queue:
			m.Handle(req)
		case <-sweep.C:
			m.mu.Lock()
			for id, t := range m.handled {
				if time.Since(t) >= m.hold {
					delete(m.handled, id)
				}
			}
			m.mu.Unlock()
		}
	}
}

// Handle checks one error against the cache file.
func (m *Manager) Handle(req types.PieceErrorRequest) {
	switch req.ErrorType {
	case types.PieceErrorFileNotExist:
		if m.cfg.SourcePattern {
			// The client did not find the piece at the source: the
			// supernode has no file that could be missing.
			m.ignore(req, "no cache file in the source pattern")
			return
		}
		if _, err := os.Stat(m.path(req.TaskID)); errors.Is(err, fs.ErrNotExist) {
			m.log.Warnf("piece error: cache of %s is missing, dropping the task", req.TaskID)
			m.gc.GCTask(req.TaskID, true)
			return
		}
		m.ignore(req, "the cache file exists")
	case types.PieceErrorFileMd5NotMatch:
		m.checkPiece(req)
	}
}

// checkPiece handles a FILE_MD5_NOT_MATCH: the piece the range names must be
// one the CDN wrote, and the range must be the one it was offered with
// (its own, or a whole piece's while the length was unknown). Only that
// piece is read, at its offset and length, and checked against its digest.
func (m *Manager) checkPiece(req types.PieceErrorRequest) {
	s, e, err := piece.ParseRange(req.Range)
	if err != nil {
		m.ignore(req, err.Error())
		return
	}
	sp, ok := m.cdn.PieceAt(req.TaskID, s)
	if !ok {
		m.ignore(req, "no written piece starts there")
		return
	}
	if e != s+sp.Length-1 && e != s+int64(sp.PieceSize)-1 {
		m.ignore(req, fmt.Sprintf("piece %d spans %d-%d", sp.Num, s, s+sp.Length-1))
		return
	}
	if m.cfg.SourcePattern {
		// Nothing here to check against: the source may have changed.
		// The next registration reads it, and its digests, again.
		m.log.Warnf("piece error: piece %d of %s does not match its digest at the source, dropping the task", sp.Num, req.TaskID)
		m.gc.GCTask(req.TaskID, true)
		return
	}
	if err := checkSpan(m.path(req.TaskID), sp); err != nil {
		m.log.WithError(err).Warnf("piece error: piece %d of %s is damaged on disk, dropping the task", sp.Num, req.TaskID)
		m.gc.GCTask(req.TaskID, true)
		return
	}
	m.ignore(req, fmt.Sprintf("piece %d is intact on disk", sp.Num))
}

func (m *Manager) ignore(req types.PieceErrorRequest, why string) {
	m.log.Infof("piece error: %s of %s from %s ignored: %s", req.ErrorType, req.TaskID, req.SrcCid, why)
}

// checkSpan reads the piece sp of the cache file at path and checks it
// against its digest; a missing or short file is damaged too.
func checkSpan(path string, sp cdn.Span) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	b := make([]byte, sp.Length)
	if _, err := f.ReadAt(b, sp.Offset); err != nil {
		return fmt.Errorf("read %s at %d: %w", path, sp.Offset, err)
	}
	if err := sp.Digest.Verify(b); err != nil {
		return fmt.Errorf("piece at %d of %s: %w", sp.Offset, path, err)
	}
	return nil
}
