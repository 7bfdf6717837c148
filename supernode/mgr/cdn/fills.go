package cdn

// The cap on fills running at once (Config.MaxFills). Each fill holds an
// origin connection and up to five piece buffers (4 to 15 MiB each) for as
// long as its source takes, so without a cap one client asking for many
// URLs, or a burst of preheats, could exhaust the supernode's memory and
// the origin's connections. A fill past the cap waits for its turn, first
// come first served, holding neither: its task's registrations are
// answered with the length a one-byte probe of the source gave
// (queuedLength, length.go; -1 when it told none) and the piece size the
// fill will use (pinnedSize), and its clients are told to wait (602) as for
// any fill that has written no piece yet. A waiting fill whose task is dropped
// (cdn.Delete), or whose supernode closes, leaves the line at once. A
// member's fill whose cluster home's own fill waits gives its slot back
// while it waits for that fill, and comes back to the front of the line
// (homewait.go). The line itself is pkg/gate's.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/gate"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// DefaultMaxFills is the cap when Config.MaxFills is not set.
const DefaultMaxFills = 16

// pinnedSize is the piece size of a fill that waits for its turn: its
// registrations are answered before the fill asks the source, and every
// piece must have the size they were given. It is the cache's when the
// cache is this task's and of the length the registrations are given (a
// complete file is then reused, a partial one resumed, with it), else the
// size of that length (unknown: -1).
func (m *Manager) pinnedSize(src Source, length int64) int32 {
	meta, err := m.store.ReadMeta(src.TaskID)
	if err == nil && sameTask(meta, src) && (length < 0 || meta.HTTPFileLen == length) &&
		meta.PieceSize >= piece.DefaultSize && meta.PieceSize <= piece.MaxSize {
		return meta.PieceSize
	}
	return piece.ComputeSize(length)
}

// enqueue starts a fill that waits for its turn t (nil: for its cluster
// home's fill first, see homewait.go), whose registrations are answered
// with length (-1: unknown; see queuedLength): the task's file, with the
// pinned piece size, is installed at once (the piece server answers "not
// ready" for it, and a stop or Delete ends the wait).
func (m *Manager) enqueue(src Source, t *gate.Turn, length int64, done func(Result)) Started {
	given := Started{HTTPFileLength: length, PieceSize: m.pinnedSize(src, length)}
	ctx, cancel := context.WithCancel(m.ctx)
	cf := newCacheFile(given.PieceSize, 0, cancel)
	cf.lazy.path = m.store.DataPath(src.TaskID)
	cf.waiting = true
	m.setFile(src.TaskID, cf)
	m.background(cf, cancel, done, func() Result { return m.waitedFill(ctx, cancel, src, cf, t, given) })
	return given
}

// waitedFill runs a fill that waits: for its turn t, and, each time its
// cluster home answers that its own fill waits for a slot (errHomeWaits,
// or from the start when t is nil), for the home's fill to start, without
// a slot, and then for a slot again (rejoin). The wait for the home is
// bounded in total (homeWait), after which the fill reads the origin.
func (m *Manager) waitedFill(ctx context.Context, cancel context.CancelFunc, src Source, cf *cacheFile, t *gate.Turn, given Started) Result {
	var deadline time.Time
	for {
		if t == nil {
			if deadline.IsZero() {
				deadline = time.Now().Add(m.homeWait)
			}
			via, err := m.awaitHome(ctx, src, deadline)
			if err != nil {
				return m.leftLine(src, cf, err)
			}
			src.Via = via
			t = m.fills.Rejoin()
		}
		r := m.inTurn(ctx, src, cf, t, func() Result { return m.fillLater(ctx, cancel, src, cf, given) })
		if !errors.Is(r.Err, errHomeWaits) {
			return r
		}
		t = nil
	}
}

// errUnwanted ends a fill that waited for its turn and has nobody left to
// download its file (Source.Wanted).
var errUnwanted = errors.New("nobody is left to download the file")

// inTurn runs fill once t holds a slot, and frees the slot after it. A
// fill stopped before its turn, or with nobody left to download the file
// when its turn comes, reads nothing: it ends failed, but counts as no
// failed download.
func (m *Manager) inTurn(ctx context.Context, src Source, cf *cacheFile, t *gate.Turn, fill func() Result) Result {
	err := m.fills.Wait(ctx, t)
	if err == nil && src.Wanted != nil && !src.Wanted() {
		m.fills.Release()
		err = errUnwanted
	}
	if err != nil {
		return m.leftLine(src, cf, err)
	}
	defer m.fills.Release()
	cf.setWaiting(false)
	return fill()
}

// leftLine ends a fill that stopped waiting (err says why) without
// reading its source: failed, but no failed download.
func (m *Manager) leftLine(src Source, cf *cacheFile, err error) Result {
	cf.close(false, 0)
	m.progress.FinishCDN(src.TaskID, 0, false)
	m.log.WithField("task", src.TaskID).WithError(err).Info("cdn fill left the line without reading its source")
	return Result{Err: fmt.Errorf("waiting for a fill slot: %w", err)}
}

// fillLater is Start's fill for a fill that waited: the same request, and
// the cache reused or resumed the same way, into the file already
// installed, whose piece size and length (when known) the plan keeps to
// what the registrations were given. A home that answers that its own
// fill waits ends it with errHomeWaits, the file left waiting, for
// waitedFill to wait for the home.
func (m *Manager) fillLater(ctx context.Context, cancel context.CancelFunc, src Source, cf *cacheFile, given Started) Result {
	id := src.TaskID
	p := m.plan(src, &given)
	resp, hit, err := m.ask(ctx, src, p)
	if errors.Is(err, errHomeWaits) {
		// Waiting again, for the home this time: nothing was read.
		cf.setWaiting(true)
		return Result{Err: err}
	}
	if err != nil {
		return m.fail(id, cf, err)
	}
	if hit {
		if r, ok := m.reuse(src, p.meta, cf); ok {
			return r
		}
		if resp, err = m.get(ctx, src, nil); err != nil {
			return m.fail(id, cf, err)
		}
	}
	m.metrics.Download.Inc()
	resp, meta, err := m.prepare(ctx, src, p, resp)
	if err != nil {
		return m.fail(id, cf, err)
	}
	return m.run(ctx, cancel, src, resp, meta, p.resume, cf)
}

// Waiting reports whether the task's fill waits for its turn.
func (m *Manager) Waiting(taskID string) bool {
	cf := m.file(taskID)
	return cf != nil && cf.isWaiting()
}
