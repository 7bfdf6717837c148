package task

import (
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

// A fill routed to the task's cluster home can ask, while it waits for the
// home's fill, which member the task would be read from now (HomeNow
// follows the membership); a cluster fetch's fill is never routed, and
// has none. The task's info tells whether its fill waits to start
// (FillWaiting), which a member waiting for this one's fill polls.
func TestRoutedFillFollowsTheHome(t *testing.T) {
	d := newDeps(t)
	home := NewMockHome(gomock.NewController(t))
	log := logrus.New()
	log.SetOutput(io.Discard)
	d.m = New(Config{AdvertiseIP: "10.0.0.1", FailAccessInterval: time.Minute, Home: home}, d.cdn, d.prog, d.peers, d.dfget, Metrics{}, log)
	via := "10.0.0.2:8002"
	home.EXPECT().Via(gomock.Any()).DoAndReturn(func(string) string { return via }).AnyTimes()
	d.prog.EXPECT().InitTask(gomock.Any()).Times(2)
	var srcs []cdn.Source
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(s cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		srcs = append(srcs, s)
		return cdn.Started{HTTPFileLength: 10, PieceSize: piece.DefaultSize}, nil
	}).Times(2)
	id, err := d.m.Ensure(cdn.Source{RawURL: "http://o/f", TaskURL: "http://o/f"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.EnsureLocal(cdn.Source{RawURL: "http://o/g", TaskURL: "http://o/g"}); err != nil {
		t.Fatal(err)
	}
	routed, local := srcs[0], srcs[1]
	if routed.Via != via || routed.HomeNow == nil || routed.HomeNow() != via {
		t.Fatalf("routed fill: Via %q, HomeNow set %t", routed.Via, routed.HomeNow != nil)
	}
	via = "10.0.0.3:8002"
	if got := routed.HomeNow(); got != via {
		t.Fatalf("HomeNow after the home moved: %q, want %q", got, via)
	}
	if local.Via != "" || local.HomeNow != nil {
		t.Fatalf("a cluster fetch's fill is routed: Via %q, HomeNow set %t", local.Via, local.HomeNow != nil)
	}
	for _, waiting := range []bool{true, false} {
		d.cdn.EXPECT().Waiting(id).Return(waiting)
		info, err := d.m.Info(id)
		if err != nil || info.CdnStatus != types.CDNStatusRunning || info.FillWaiting != waiting {
			t.Fatalf("info of a running task whose fill waits %t: %+v %v", waiting, info, err)
		}
	}
}
