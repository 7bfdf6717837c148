package scheduler

import (
	"errors"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

var cfg = Config{Limits: progress.Limits{DownLimit: 3, UpLimit: 5, SuperLimit: 16}, EliminationLimit: 5, FailureCountLimit: 5}

func TestScheduleRarestFirst(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	p.EXPECT().ClientView("t", "c").Return(progress.View{Candidates: []progress.Candidate{
		{Num: 0, Holders: 3}, {Num: 1, Holders: 0}, {Num: 2, Holders: 2}, {Num: 3, Holders: 1},
	}}, nil)
	var order []int
	p.EXPECT().Assign("t", "c", gomock.Any(), true, cfg.Limits, 5).DoAndReturn(
		func(_, _ string, num int, _ bool, _ progress.Limits, _ int) string {
			order = append(order, num)
			return "peer"
		}).Times(3)
	as, err := New(p, cfg).Schedule("t", "c")
	if err != nil || len(as) != 3 {
		t.Fatalf("schedule: %v %v", as, err)
	}
	if order[0] != 1 || order[1] != 3 || order[2] != 2 {
		t.Fatalf("order %v, want rarest first [1 3 2]", order)
	}
}

func TestScheduleStreamAscendingAndSkipsUnassignable(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	p.EXPECT().ClientView("t", "s").Return(progress.View{Stream: true, Candidates: []progress.Candidate{
		{Num: 7, Holders: 0}, {Num: 5, Holders: 4}, {Num: 6, Holders: 1},
	}}, nil)
	gomock.InOrder(
		p.EXPECT().Assign("t", "s", 5, true, cfg.Limits, 5).Return(""),
		p.EXPECT().Assign("t", "s", 6, true, cfg.Limits, 5).Return("super"),
		p.EXPECT().Assign("t", "s", 7, true, cfg.Limits, 5).Return("peer"),
	)
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
		{"nothing yet", progress.View{}, nil, ErrWait},
		{"at limit", progress.View{Running: []int{1, 2, 3}, Candidates: []progress.Candidate{{Num: 4}}}, nil, ErrLimited},
		{"unknown", progress.View{}, progress.ErrUnknownClient, progress.ErrUnknownClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl := gomock.NewController(t)
			p := NewMockProgress(ctrl)
			p.EXPECT().ClientView("t", "c").Return(tc.view, tc.err)
			if _, err := New(p, cfg).Schedule("t", "c"); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestScheduleFailingClientGoesToSupernodeOnly(t *testing.T) {
	ctrl := gomock.NewController(t)
	p := NewMockProgress(ctrl)
	p.EXPECT().ClientView("t", "c").Return(progress.View{ClientErrors: 6, Running: []int{9, 10},
		Candidates: []progress.Candidate{{Num: 0, Holders: 2}, {Num: 1, Holders: 2}}}, nil)
	p.EXPECT().Assign("t", "c", gomock.Any(), false, cfg.Limits, 5).Return("super").Times(1)
	as, err := New(p, cfg).Schedule("t", "c")
	if err != nil || len(as) != 1 {
		t.Fatalf("room for one piece: %v %v", as, err)
	}
	// All candidates unassignable: busy.
	p.EXPECT().ClientView("t", "c").Return(progress.View{Candidates: []progress.Candidate{{Num: 0}}}, nil)
	p.EXPECT().Assign("t", "c", 0, true, cfg.Limits, 5).Return("")
	if _, err := New(p, cfg).Schedule("t", "c"); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
}
