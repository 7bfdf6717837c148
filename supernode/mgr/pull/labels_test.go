package pull

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
)

// The scheduling time is labelled, as in v1, with the calling peer's IP
// (normalised, bounded), never with the superNodeIp text the client sent.
func TestScheduleDurationPeerLabel(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	mx := metrics.New()
	d.m = New(d.m.cfg, d.m.Deps, Metrics{ScheduleDuration: mx.ScheduleDuration, Labels: mx.Labels})
	d.sched.EXPECT().Schedule(id, gomock.Any()).Return(nil, scheduler.ErrLimited).AnyTimes()
	pull := func(ip, superIP string, i int) {
		t.Helper()
		pid, err := d.peers.Register(types.PeerCreateRequest{IP: ip, HostName: "h", Port: 15000})
		if err != nil {
			t.Fatal(err)
		}
		cid := fmt.Sprint("cid-", i)
		if err := d.dfget.Add(dfgettask.Task{CID: cid, TaskID: id, PeerID: pid, Path: "/peer/file/" + cid, SupernodeIP: superIP}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: cid, Status: types.TaskStatusStart}); err != nil {
			t.Fatal(err)
		}
	}
	pull("::ffff:10.1.1.7", "10.9.9.9", -1)
	pull("10.1.1.7", "not an ip", -2)
	const n = 500
	for i := range n {
		pull(fmt.Sprintf("10.2.%d.%d", i>>8, i&0xff), fmt.Sprint("super-", i), i)
	}
	fams, err := mx.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() == "dragonfly_supernode_schedule_duration_milliseconds" {
			for _, s := range f.GetMetric() {
				count[s.GetLabel()[0].GetValue()] = s.GetHistogram().GetSampleCount()
			}
		}
	}
	t.Logf("%d series after %d pulls", len(count), n+2)
	if len(count) > metrics.MaxPeers+1 || count["10.1.1.7"] != 2 || count[metrics.Other] != n-(metrics.MaxPeers-1) {
		t.Errorf("%d series, 10.1.1.7 seen %d times, other %d: want at most %d, 2 and %d", len(count), count["10.1.1.7"],
			count[metrics.Other], metrics.MaxPeers+1, n-(metrics.MaxPeers-1))
	}
	for _, bad := range []string{"10.9.9.9", "not an ip", "super-1", metrics.Invalid} {
		if _, ok := count[bad]; ok {
			t.Errorf("a series labelled %q", bad)
		}
	}
}
