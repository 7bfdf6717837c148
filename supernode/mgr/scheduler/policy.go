package scheduler

import "github.com/damselfly-p2p/damselfly/supernode/mgr/progress"

// piecePolicy orders the pieces a client may fetch: it offers them to
// assign in the order they should be tried, batch by batch, and stops
// once assign reports the client has all it can run. skipUnheld asks it
// to leave out the pieces no peer holds.
type piecePolicy interface {
	offer(v progress.View, skipUnheld bool, sc *scratch, a *assigner)
}

// assigner hands the pieces a policy offers to the progress store, with
// the holder policy, and collects what was assigned.
type assigner struct {
	s           *Scheduler
	taskID, cid string
	pick        progress.HolderPicker
	want        int // pieces the client can still run
	out         []Assignment
}

// assign offers nums, in order; it reports whether the client is full.
func (a *assigner) assign(nums []int) (full bool) {
	for _, x := range a.s.p.Assign(a.taskID, a.cid, nums, a.s.cfg.Limits.DownLimit, a.pick) {
		a.out = append(a.out, Assignment{Num: x.Num, DstPID: x.Dst})
	}
	return len(a.out) >= a.want
}
