// Package scheduler picks the pieces a client fetches next and where from:
// rarest first (ascending order inside the window for a streaming client),
// the least loaded usable peer holding it, the supernode as the fallback.
package scheduler

//go:generate go tool mockgen -source=scheduler.go -destination=mock_progress_test.go -package=scheduler

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// Progress is what the scheduler needs from the progress manager.
type Progress interface {
	ClientView(taskID, cid string, maxRunning int, buf []progress.Candidate) (progress.View, error)
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
	// scratch recycles the per-call buffers (candidates, sort keys, piece
	// numbers): with 1,000 pieces they are ~40 KiB a call, which at
	// thousands of calls a second kept the garbage collector busy.
	scratch sync.Pool
}

type scratch struct {
	cands []progress.Candidate
	keys  []uint64
	nums  []int
}

// New returns a scheduler over p.
func New(p Progress, cfg Config) *Scheduler {
	return &Scheduler{p: p, cfg: cfg, scratch: sync.Pool{New: func() any { return new(scratch) }}}
}

// Candidates are ordered and offered batch by batch (see Schedule).
const (
	batch    = 32
	maxTried = 8 * batch
)

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
	var out []Assignment
	assign := func(nums []int) {
		for _, a := range s.p.Assign(taskID, cid, nums, peers, s.cfg.Limits, s.cfg.EliminationLimit) {
			out = append(out, Assignment{Num: a.Num, DstPID: a.Dst})
		}
	}
	sc.nums = sc.nums[:0]
	if v.Stream {
		for _, c := range v.Candidates {
			sc.nums = append(sc.nums, c.Num)
		}
		slices.Sort(sc.nums)
		assign(sc.nums)
	} else {
		// The rarest pieces are offered in batches, each picked from the
		// rest by quickselect, until the client's slots are filled or
		// maxTried pieces were offered: past that the client long-polls
		// (602) rather than making every call cost O(pieces x holders)
		// when the rare pieces' holders are all busy.
		// With the supernode at its limit, a piece no peer holds cannot be
		// had now; nor can one only in flight (super-seeding keeps the
		// supernode from sending it twice). Leaving them out keeps the
		// batches for pieces a peer can serve.
		skipUnheld := peers && v.Super >= s.cfg.Limits.SuperLimit
		sc.keys = keys(v, skipUnheld, sc.keys[:0])
		want := s.cfg.Limits.DownLimit - len(v.Running)
		for rest := sc.keys; len(rest) > 0 && len(out) < want && len(sc.keys)-len(rest) < maxTried; {
			n := min(batch, len(rest))
			if n < len(rest) {
				selectSmallest(rest, n)
			}
			slices.Sort(rest[:n])
			sc.nums = appendNums(sc.nums[:0], rest[:n], v.Candidates)
			assign(sc.nums)
			rest = rest[n:]
		}
	}
	if len(out) == 0 {
		return nil, ErrBusy
	}
	return out, nil
}

// Key layout: fewest holders first, then closest to the centre of the
// running pieces, then random so clients spread over equally rare pieces;
// the low bits carry the candidate's index.
const (
	idxBits  = 22
	randBits = 12
	distBits = 20
	holdBits = 64 - idxBits - randBits - distBits
)

// keys packs one sortable key per candidate (non-streaming clients),
// without the candidates no peer holds when skipUnheld is set.
func keys(v progress.View, skipUnheld bool, out []uint64) []uint64 {
	center := 0
	if len(v.Running) > 0 {
		sum := 0
		for _, n := range v.Running {
			sum += n
		}
		center = sum / len(v.Running)
	}
	r := rand.Uint64()
	for i, x := range v.Candidates {
		if i >= 1<<idxBits {
			break // more pieces than a key can index: the rest wait for a later call
		}
		if skipUnheld && x.Held == 0 {
			continue
		}
		if len(out)%5 == 0 {
			r = rand.Uint64() // 5 x 12 random bits per draw
		}
		h := uint64(min(max(x.Holders, 0), 1<<holdBits-1))
		d := uint64(min(abs(x.Num-center), 1<<distBits-1))
		rb := r & (1<<randBits - 1)
		r >>= randBits
		out = append(out, h<<(64-holdBits)|d<<(idxBits+randBits)|rb<<idxBits|uint64(i))
	}
	return out
}

func appendNums(nums []int, ks []uint64, c []progress.Candidate) []int {
	for _, k := range ks {
		nums = append(nums, c[k&(1<<idxBits-1)].Num)
	}
	return nums
}

// selectSmallest moves the k smallest keys to ks[:k] (in no order), in
// O(len(ks)) expected time (quickselect).
func selectSmallest(ks []uint64, k int) {
	lo, hi := 0, len(ks)
	for hi-lo > 1 {
		p := ks[lo+rand.IntN(hi-lo)]
		// Three-way partition of ks[lo:hi] around p.
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch {
			case ks[i] < p:
				ks[lt], ks[i] = ks[i], ks[lt]
				lt++
				i++
			case ks[i] > p:
				gt--
				ks[gt], ks[i] = ks[i], ks[gt]
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt
		case k > gt:
			lo = gt
		default:
			return
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
