// Package scheduler decides which pieces a client fetches next and from
// which holder, as policies over the state kept by supernode/mgr/progress:
// a piece policy orders the candidates (rarest.go: rarest first; window.go:
// ascending inside a streaming client's window) and the holder policy
// (holder.go) picks the least loaded usable peer holding each piece, the
// supernode as the fallback. The /peer/task call that asks it is answered
// by supernode/mgr/pull.
package scheduler

//go:generate go tool mockgen -source=scheduler.go -destination=mock_progress_test.go -package=scheduler

import (
	"errors"
	"sync"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// Progress is what the scheduler needs from the progress manager.
type Progress interface {
	ClientView(taskID, cid string, maxRunning int, buf []progress.Candidate) (progress.View, error)
	Assign(taskID, cid string, nums []int, downLimit int, pick progress.HolderPicker) []progress.Assigned
}

// Errors the caller maps to protocol codes.
var (
	// ErrWait: nothing to fetch yet (602).
	ErrWait = errors.New("no piece available yet")
	// ErrBusy: pieces exist but every holder is at its limit (602).
	ErrBusy = errors.New("every holder of the available pieces is busy")
	// ErrLimited: the client already runs its limit of pieces (601, no data).
	ErrLimited = errors.New("client is at its running-piece limit")
	// ErrDone: the client has every piece of a finished task (600).
	ErrDone = errors.New("client has every piece")
	// ErrCDNFailed: the CDN failed (500).
	ErrCDNFailed = errors.New("cdn failed")
)

// Assignment is one piece for the client and the peer it comes from.
type Assignment struct {
	Num    int
	DstPID string
}

// Config holds the limits.
type Config struct {
	Limits            progress.Limits
	EliminationLimit  int
	FailureCountLimit int
}

// Scheduler is the default scheduler.
type Scheduler struct {
	p   Progress
	cfg Config
	// Piece policies, by kind of client.
	rarest, window piecePolicy
	// Holder policies: with peers, and the supernode only (for a client
	// that keeps failing).
	withPeers, superOnly *holderPicker
	// scratch recycles the per-call buffers (candidates, sort keys, piece
	// numbers): with many pieces they are tens of KiB a call, which at
	// thousands of calls a second kept the garbage collector busy.
	scratch sync.Pool
}

type scratch struct {
	cands    []progress.Candidate
	keys     []uint64
	nums     []int
	assigner assigner
}

// New returns a scheduler over p.
func New(p Progress, cfg Config) *Scheduler {
	return &Scheduler{p: p, cfg: cfg, scratch: sync.Pool{New: func() any { return new(scratch) }},
		rarest: rarestFirst{}, window: streamWindow{},
		withPeers: &holderPicker{lim: cfg.Limits, eliminationLimit: cfg.EliminationLimit, peers: true},
		superOnly: &holderPicker{lim: cfg.Limits, eliminationLimit: cfg.EliminationLimit}}
}

// Schedule assigns up to DownLimit-running pieces to client cid of task.
func (s *Scheduler) Schedule(taskID, cid string) ([]Assignment, error) {
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	v, err := s.p.ClientView(taskID, cid, s.cfg.Limits.DownLimit, sc.cands)
	if err != nil {
		return nil, err
	}
	sc.cands = v.Candidates
	if v.CDNFailed {
		return nil, ErrCDNFailed
	}
	if v.Done {
		return nil, ErrDone
	}
	if len(v.Candidates) == 0 {
		return nil, ErrWait
	}
	if len(v.Running) >= s.cfg.Limits.DownLimit {
		return nil, ErrLimited
	}
	// A client that keeps failing is served by the supernode only.
	peers := v.ClientErrors <= s.cfg.FailureCountLimit
	pick, order := s.superOnly, s.rarest
	if peers {
		pick = s.withPeers
	}
	if v.Stream {
		order = s.window
	}
	// With the supernode at its limit, a piece no peer holds cannot be
	// had now; nor can one only in flight (super-seeding keeps the
	// supernode from sending it twice). Leaving them out keeps the
	// batches for pieces a peer can serve.
	skipUnheld := peers && v.Super >= s.cfg.Limits.SuperLimit
	a := &sc.assigner
	*a = assigner{s: s, taskID: taskID, cid: cid, pick: pick, want: s.cfg.Limits.DownLimit - len(v.Running)}
	order.offer(v, skipUnheld, sc, a)
	out := a.out
	*a = assigner{}
	if len(out) == 0 {
		return nil, ErrBusy
	}
	return out, nil
}
