package task

import (
	"net/netip"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

// The fill a registration starts is wanted while the registration runs
// (no client entry yet) and while a client's peer is up; once its only
// client went down (/peer/service/down) nobody is left, so a fill that
// waited for a slot reads no source. A preheat's fill is wanted with no
// client at all.
func TestFillWantedWhileAClientIsLeft(t *testing.T) {
	d := newDeps(t)
	var wanted func() bool
	var duringRegistration bool
	d.prog.EXPECT().InitTask(gomock.Any()).AnyTimes()
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(src cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		wanted = src.Wanted
		if wanted != nil {
			duringRegistration = wanted()
		}
		return cdn.Started{HTTPFileLength: -1, PieceSize: piece.DefaultSize}, nil
	}).Times(2)
	d.prog.EXPECT().InitClient(gomock.Any(), "c1", gomock.Any(), false, false, 0)
	var down time.Time
	d.prog.EXPECT().DownSince(gomock.Any()).DoAndReturn(func(string) time.Time { return down }).AnyTimes()
	d.prog.EXPECT().PeerDown(gomock.Any()).Do(func(string) { down = time.Now() })
	res, err := d.m.Register(RegisterParams{Req: validReq(), RemoteIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if wanted == nil || !duringRegistration {
		t.Fatalf("registration's fill: Wanted set %t, wanted during the registration %t", wanted != nil, duringRegistration)
	}
	if !wanted() {
		t.Fatal("fill with a client up is not wanted")
	}
	if err := d.m.ServiceDown(res.TaskID, "c1", netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if wanted() {
		t.Fatal("fill whose only client went down is still wanted")
	}
	if _, err := d.m.Ensure(cdn.Source{RawURL: "http://o/p", TaskURL: "http://o/p"}); err != nil {
		t.Fatal(err)
	}
	if wanted == nil || !wanted() {
		t.Fatal("a preheat's fill is not wanted")
	}
}
