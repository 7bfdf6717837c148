package scheduler

import (
	"slices"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// The piece policies, one situation per row: the order in which each
// offers a client's candidates.
func TestPiecePolicies(t *testing.T) {
	c := func(num, holders, held int) progress.Candidate {
		return progress.Candidate{Num: num, Holders: holders, Held: held}
	}
	for _, tc := range []struct {
		name       string
		policy     piecePolicy
		cands      []progress.Candidate
		skipUnheld bool
		want       []int
	}{
		{"rarest first, then nearest", rarestFirst{}, []progress.Candidate{c(0, 2, 2), c(1, 0, 0), c(2, 1, 1), c(3, 0, 0)}, false, []int{1, 3, 2, 0}},
		{"rarest without the unheld", rarestFirst{}, []progress.Candidate{c(0, 0, 0), c(1, 1, 1), c(2, 2, 0)}, true, []int{1}},
		{"window ascending", streamWindow{}, []progress.Candidate{c(7, 0, 0), c(5, 3, 3), c(6, 1, 1)}, false, []int{5, 6, 7}},
		{"window keeps the unheld", streamWindow{}, []progress.Candidate{c(1, 0, 0), c(0, 1, 1)}, true, []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewMockProgress(gomock.NewController(t))
			var offered []int
			p.EXPECT().Assign("t", "c", gomock.Any(), 4, gomock.Any()).DoAndReturn(
				func(_, _ string, nums []int, _ int, _ progress.HolderPicker) []progress.Assigned {
					offered = append(offered, nums...)
					return nil
				})
			s := New(p, Config{Limits: progress.Limits{DownLimit: 4}})
			tc.policy.offer(progress.View{Candidates: tc.cands}, tc.skipUnheld, new(scratch),
				&assigner{s: s, taskID: "t", cid: "c", want: 4})
			if !slices.Equal(offered, tc.want) {
				t.Fatalf("offered %v, want %v", offered, tc.want)
			}
		})
	}
}
