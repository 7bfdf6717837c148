// Package pieceerror handles clients' reports of bad pieces served by the
// supernode: a missing cache file or a piece whose bytes no longer match
// its digest makes the task's cache be dropped, so the next registration
// fetches the source again.
package pieceerror

//go:generate go tool mockgen -source=pieceerror.go -destination=mock_deps_test.go -package=pieceerror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// Tasks gives a task's piece size.
type Tasks interface {
	Info(id string) (types.TaskInfo, error)
}

// CDN gives the recorded digest of a piece: its BLAKE3 digest, which the
// supernode always has for a piece it wrote (its md5 may not be computed).
type CDN interface {
	PieceDigest(taskID string, num int) digest.Digest
}

// GC drops a task.
type GC interface {
	GCTask(taskID string, full bool)
}

// DataPath locates a cache file.
type DataPath func(taskID string) string

// ErrBusy reports a full queue.
var ErrBusy = errors.New("piece error queue is full")

// Manager queues and handles piece errors.
type Manager struct {
	superPID string
	tasks    Tasks
	cdn      CDN
	gc       GC
	path     DataPath
	log      logrus.FieldLogger
	queue    chan types.PieceErrorRequest
	hold     time.Duration

	mu      sync.Mutex
	handled map[string]time.Time // taskID -> when, to drop duplicates
}

// New returns a manager; only errors against superPID are handled.
func New(superPID string, t Tasks, c CDN, gc GC, path DataPath, log logrus.FieldLogger) *Manager {
	return &Manager{superPID: superPID, tasks: t, cdn: c, gc: gc, path: path, log: log,
		queue: make(chan types.PieceErrorRequest, 100), hold: 3 * time.Second, handled: map[string]time.Time{}}
}

// Report enqueues an error; errors about peers other than the supernode are
// ignored (the scheduler's failure counts handle those).
func (m *Manager) Report(req types.PieceErrorRequest) error {
	if req.DstPid != m.superPID {
		return nil
	}
	if req.ErrorType != types.PieceErrorFileNotExist && req.ErrorType != types.PieceErrorFileMd5NotMatch {
		return fmt.Errorf("unknown piece error type %q", req.ErrorType)
	}
	m.mu.Lock()
	if t, ok := m.handled[req.TaskID]; ok && time.Since(t) < m.hold {
		m.mu.Unlock()
		return nil
	}
	m.handled[req.TaskID] = time.Now()
	m.mu.Unlock()
	select {
	case m.queue <- req:
		return nil
	default:
		return ErrBusy
	}
}

// CacheDamaged is the supernode's own report of damage it found in a
// task's cache file (the wrapped bytes wrappedRange fail their digest): a
// Dragonfly 1.x client is never offered such a piece, so never reports it.
// It takes the path of a client's report: checked against the file, then
// the task is dropped.
func (m *Manager) CacheDamaged(taskID, wrappedRange string) {
	req := types.PieceErrorRequest{TaskID: taskID, DstPid: m.superPID, ErrorType: types.PieceErrorFileMd5NotMatch,
		Range: wrappedRange}
	if err := m.Report(req); err != nil {
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
	p := m.path(req.TaskID)
	switch req.ErrorType {
	case types.PieceErrorFileNotExist:
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			m.log.Warnf("piece error: cache of %s is missing, dropping the task", req.TaskID)
			m.gc.GCTask(req.TaskID, true)
		}
	case types.PieceErrorFileMd5NotMatch:
		info, err := m.tasks.Info(req.TaskID)
		if err != nil {
			return
		}
		num, err := piece.NumFromRange(req.Range, info.PieceSize)
		if err != nil {
			return
		}
		s, e, _ := piece.ParseRange(req.Range)
		b, err := readRange(p, s, e-s+1)
		want := m.cdn.PieceDigest(req.TaskID, num)
		if err != nil || (!want.IsZero() && want.Verify(b) != nil) {
			m.log.Warnf("piece error: piece %d of %s is damaged on disk, dropping the task", num, req.TaskID)
			m.gc.GCTask(req.TaskID, true)
		}
	}
}

func readRange(path string, off, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, off, n))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
