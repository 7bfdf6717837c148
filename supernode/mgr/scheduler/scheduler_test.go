package scheduler

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

var cfg = Config{Limits: progress.Limits{DownLimit: 3, UpLimit: 5, SuperLimit: 16}, EliminationLimit: 5, FailureCountLimit: 5}

func TestScheduleRarestFirst(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	p.EXPECT().ClientView("t", "c", cfg.Limits.DownLimit, gomock.Any()).Return(progress.View{Candidates: []progress.Candidate{
		{Num: 0, Holders: 3}, {Num: 1, Holders: 0}, {Num: 2, Holders: 2}, {Num: 3, Holders: 1},
	}}, nil)
	p.EXPECT().Assign("t", "c", []int{1, 3, 2, 0}, cfg.Limits.DownLimit, &holderPicker{lim: cfg.Limits, eliminationLimit: 5, peers: true}).
		Return([]progress.Assigned{{Num: 1, Dst: "super"}, {Num: 3, Dst: "peer"}})
	as, err := New(p, cfg).Schedule("t", "c")
	if err != nil || len(as) != 2 || as[0] != (Assignment{1, "super"}) || as[1] != (Assignment{3, "peer"}) {
		t.Fatalf("schedule: %v %v", as, err)
	}
}

func TestScheduleNearRunningPiecesOnTies(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	p.EXPECT().ClientView("t", "c", cfg.Limits.DownLimit, gomock.Any()).Return(progress.View{Running: []int{10, 12}, Candidates: []progress.Candidate{
		{Num: 0}, {Num: 20}, {Num: 11}, {Num: 13},
	}}, nil)
	p.EXPECT().Assign("t", "c", []int{11, 13, 20, 0}, cfg.Limits.DownLimit, &holderPicker{lim: cfg.Limits, eliminationLimit: 5, peers: true}).Return([]progress.Assigned{{Num: 11, Dst: "super"}})
	if _, err := New(p, cfg).Schedule("t", "c"); err != nil {
		t.Fatal(err)
	}
}

func TestScheduleStreamAscending(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	p.EXPECT().ClientView("t", "s", cfg.Limits.DownLimit, gomock.Any()).Return(progress.View{Stream: true, Candidates: []progress.Candidate{
		{Num: 7, Holders: 0}, {Num: 5, Holders: 4}, {Num: 6, Holders: 1},
	}}, nil)
	p.EXPECT().Assign("t", "s", []int{5, 6, 7}, cfg.Limits.DownLimit, &holderPicker{lim: cfg.Limits, eliminationLimit: 5, peers: true}).Return([]progress.Assigned{{Num: 6, Dst: "super"}, {Num: 7, Dst: "peer"}})
	as, err := New(p, cfg).Schedule("t", "s")
	if err != nil || len(as) != 2 || as[0] != (Assignment{6, "super"}) || as[1] != (Assignment{7, "peer"}) {
		t.Fatalf("schedule: %v %v", as, err)
	}
}

func TestScheduleOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name string
		view progress.View
		err  error
		want error
	}{
		{"cdn failed", progress.View{CDNFailed: true}, nil, ErrCDNFailed},
		{"done", progress.View{Done: true}, nil, ErrDone},
		{"nothing yet", progress.View{}, nil, ErrWait},
		{"at limit", progress.View{Running: []int{1, 2, 3}, Candidates: []progress.Candidate{{Num: 4}}}, nil, ErrLimited},
		{"unknown", progress.View{}, progress.ErrUnknownClient, progress.ErrUnknownClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl := gomock.NewController(t)
			p := NewMockProgress(ctrl)
			p.EXPECT().ClientView("t", "c", cfg.Limits.DownLimit, gomock.Any()).Return(tc.view, tc.err)
			if _, err := New(p, cfg).Schedule("t", "c"); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestScheduleFailingClientAndBusy(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	// A client over the failure limit: supernode only (peers=false).
	p.EXPECT().ClientView("t", "c", cfg.Limits.DownLimit, gomock.Any()).Return(progress.View{ClientErrors: 6, Candidates: []progress.Candidate{{Num: 0, Holders: 2}}}, nil)
	p.EXPECT().Assign("t", "c", []int{0}, cfg.Limits.DownLimit, &holderPicker{lim: cfg.Limits, eliminationLimit: 5, peers: false}).Return([]progress.Assigned{{Num: 0, Dst: "super"}})
	if as, err := New(p, cfg).Schedule("t", "c"); err != nil || len(as) != 1 {
		t.Fatalf("failing client: %v %v", as, err)
	}
	// Candidates exist but nothing could be assigned: busy.
	p.EXPECT().ClientView("t", "c", cfg.Limits.DownLimit, gomock.Any()).Return(progress.View{Candidates: []progress.Candidate{{Num: 0}}}, nil)
	p.EXPECT().Assign("t", "c", []int{0}, cfg.Limits.DownLimit, &holderPicker{lim: cfg.Limits, eliminationLimit: 5, peers: true}).Return(nil)
	if _, err := New(p, cfg).Schedule("t", "c"); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
}

// With many candidates, the rarest are offered first, batch by batch, and
// no more than maxTried of them in one call.
func TestScheduleManyCandidates(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	const n = 300
	var cs []progress.Candidate
	for i := range n {
		cs = append(cs, progress.Candidate{Num: i, Holders: n - i})
	}
	p.EXPECT().ClientView("t", "c", cfg.Limits.DownLimit, gomock.Any()).Return(progress.View{Candidates: cs}, nil)
	var offered []int
	p.EXPECT().Assign("t", "c", gomock.Any(), cfg.Limits.DownLimit, &holderPicker{lim: cfg.Limits, eliminationLimit: cfg.EliminationLimit, peers: true}).DoAndReturn(
		func(_, _ string, nums []int, _ int, _ progress.HolderPicker) []progress.Assigned {
			if len(nums) != batch {
				t.Errorf("batch of %d", len(nums))
			}
			offered = append(offered, nums...)
			if len(offered) == 2*batch {
				return []progress.Assigned{{Num: nums[0], Dst: "p"}}
			}
			return nil
		}).Times(maxTried / batch)
	as, err := New(p, cfg).Schedule("t", "c")
	if err != nil || len(as) != 1 || as[0].Num != n-1-batch {
		t.Fatalf("got %v, %v", as, err)
	}
	for i, num := range offered {
		if num != n-1-i {
			t.Fatalf("offered %v, want %d down to %d", offered, n-1, n-maxTried)
		}
	}
}

func TestSelectSmallest(t *testing.T) {
	for _, n := range []int{2, 33, 100, 1000} {
		ks := make([]uint64, n)
		for i := range ks {
			ks[i] = uint64(rand.IntN(50))<<32 | uint64(i) // duplicates in the high bits
		}
		k := min(n-1, batch)
		selectSmallest(ks, k)
		if mx, mn := slices.Max(ks[:k]), slices.Min(ks[k:]); mx > mn {
			t.Errorf("n=%d: max of the first %d is %d > %d", n, k, mx, mn)
		}
	}
}

// With the supernode at its limit, pieces no peer holds are not offered.
func TestScheduleSkipsUnheldWhenSupernodeFull(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	p.EXPECT().ClientView("t", "c", cfg.Limits.DownLimit, gomock.Any()).Return(progress.View{Super: cfg.Limits.SuperLimit, Candidates: []progress.Candidate{
		{Num: 0}, {Num: 1, Holders: 1}, {Num: 2, Holders: 3, Held: 1},
	}}, nil)
	p.EXPECT().Assign("t", "c", []int{2}, cfg.Limits.DownLimit, &holderPicker{lim: cfg.Limits, eliminationLimit: cfg.EliminationLimit, peers: true}).Return([]progress.Assigned{{Num: 2, Dst: "p"}})
	if as, err := New(p, cfg).Schedule("t", "c"); err != nil || len(as) != 1 {
		t.Fatalf("got %v, %v", as, err)
	}
}
