package scheduler

import (
	"slices"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// streamWindow is the piece policy of a streaming client: the candidates,
// already limited to its window by the progress store, in ascending
// order, so the stream's next piece comes first.
type streamWindow struct{}

func (streamWindow) offer(v progress.View, _ bool, sc *scratch, a *assigner) {
	sc.nums = sc.nums[:0]
	for _, c := range v.Candidates {
		sc.nums = append(sc.nums, c.Num)
	}
	slices.Sort(sc.nums)
	a.assign(sc.nums)
}
