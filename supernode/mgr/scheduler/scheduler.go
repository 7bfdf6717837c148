// Package scheduler picks the pieces a client fetches next and where from:
// rarest first (ascending order inside the window for a streaming client),
// the least loaded usable peer holding it, the supernode as the fallback.
package scheduler

//go:generate go tool mockgen -source=scheduler.go -destination=mock_progress_test.go -package=scheduler

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// Progress is what the scheduler needs from the progress manager.
type Progress interface {
	ClientView(taskID, cid string) (progress.View, error)
	Assign(taskID, cid string, nums []int, peers bool, lim progress.Limits, eliminationLimit int) []progress.Assigned
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
}

// New returns a scheduler over p.
func New(p Progress, cfg Config) *Scheduler { return &Scheduler{p: p, cfg: cfg} }

// Schedule assigns up to DownLimit-running pieces to client cid of task.
func (s *Scheduler) Schedule(taskID, cid string) ([]Assignment, error) {
	v, err := s.p.ClientView(taskID, cid)
	if err != nil {
		return nil, err
	}
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
	order(v)
	nums := make([]int, len(v.Candidates))
	for i, c := range v.Candidates {
		nums[i] = c.Num
	}
	// A client that keeps failing is served by the supernode only.
	peers := v.ClientErrors <= s.cfg.FailureCountLimit
	var out []Assignment
	for _, a := range s.p.Assign(taskID, cid, nums, peers, s.cfg.Limits, s.cfg.EliminationLimit) {
		out = append(out, Assignment{Num: a.Num, DstPID: a.Dst})
	}
	if len(out) == 0 {
		return nil, ErrBusy
	}
	return out, nil
}

// order sorts candidates: ascending piece number for a streaming client;
// otherwise fewest holders first, then closest to the centre of the running
// pieces, then random so clients spread over equally rare pieces. The three
// criteria are packed into one integer key per piece, which keeps this cheap
// when many clients pull a task of many pieces.
func order(v progress.View) {
	c := v.Candidates
	if v.Stream {
		slices.SortFunc(c, func(a, b progress.Candidate) int { return a.Num - b.Num })
		return
	}
	center := 0
	if len(v.Running) > 0 {
		sum := 0
		for _, n := range v.Running {
			sum += n
		}
		center = sum / len(v.Running)
	}
	type keyed struct {
		key uint64
		c   progress.Candidate
	}
	ks := make([]keyed, len(c))
	for i, x := range c {
		h := uint64(min(max(x.Holders, 0), 1<<20-1))
		d := uint64(min(abs(x.Num-center), 1<<22-1))
		ks[i] = keyed{key: h<<42 | d<<20 | uint64(rand.IntN(1<<20)), c: x}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	for i := range ks {
		c[i] = ks[i].c
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
