package scheduler

import (
	"math/rand/v2"
	"slices"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// Candidates are ordered and offered batch by batch (see rarestFirst).
const (
	batch    = 32
	maxTried = 8 * batch
)

// rarestFirst is the piece policy of a file client: the pieces fewest
// peers hold or fetch first, then those nearest its running pieces, then
// at random so clients spread over equally rare pieces. They are offered
// in batches, each picked from the rest by quickselect, until the
// client's slots are filled or maxTried pieces were offered: past that
// the client long-polls (602) rather than making every call cost
// O(pieces x holders) when the rare pieces' holders are all busy.
type rarestFirst struct{}

func (rarestFirst) offer(v progress.View, skipUnheld bool, sc *scratch, a *assigner) {
	sc.keys = keys(v, skipUnheld, sc.keys[:0])
	for rest := sc.keys; len(rest) > 0 && len(sc.keys)-len(rest) < maxTried; {
		n := min(batch, len(rest))
		if n < len(rest) {
			selectSmallest(rest, n)
		}
		slices.Sort(rest[:n])
		sc.nums = appendNums(sc.nums[:0], rest[:n], v.Candidates)
		if a.assign(sc.nums) {
			return
		}
		rest = rest[n:]
	}
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
