package pull

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// /peer/task as a client from another address than the one it registered
// from is answered as for an unknown client and changes nothing: no
// progress update, no stream end, nothing scheduled (the mocks expect no
// call) and the client's status stays WAITING. From its own address the
// call is taken.
func TestPullBoundToRegistrationAddress(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	owner, other := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	if err := d.dfget.Add(dfgettask.Task{CID: "c9", TaskID: id, PeerID: "p9", Path: "/peer/file/c9", Addr: owner}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, q := range []Query{
		{TaskID: id, SrcCID: "c9", Status: types.TaskStatusStart, From: other},
		{TaskID: id, SrcCID: "c9", Status: types.TaskStatusRunning, Result: types.ResultSuc, Range: "0-14", From: other},
		{TaskID: id, SrcCID: "c9", Status: types.TaskStatusRunning, Result: types.ResultFail, Range: "0-14", DstCID: "c1", From: other},
		{TaskID: id, SrcCID: "c9", Status: types.TaskStatusFinish, Result: types.ResultFail, From: other},
	} {
		_, err := d.m.Pull(ctx, q)
		q.SrcCID = "nobody"
		_, unknown := d.m.Pull(ctx, q)
		if task.CodeOf(err) != types.CodeTargetNotFound || task.CodeOf(unknown) != task.CodeOf(err) ||
			strings.Replace(err.Error(), "c9", "nobody", 1) != unknown.Error() {
			t.Errorf("status %d result %d from %s: %v, want an unknown client's answer: %v", q.Status, q.Result, other, err, unknown)
		}
		var fe *dfgettask.ForeignError
		if !errors.As(err, &fe) || fe.Bound != owner || fe.From != other {
			t.Errorf("status %d result %d: %v does not carry the two addresses", q.Status, q.Result, err)
		}
	}
	if dt, _ := d.dfget.Get("c9", id); dt.Status != dfgettask.StatusWaiting {
		t.Fatalf("c9's status %s after calls from %s, want %s", dt.Status, other, dfgettask.StatusWaiting)
	}
	d.sched.EXPECT().Schedule(id, "c9").Return(nil, scheduler.ErrLimited)
	if res, err := d.m.Pull(ctx, Query{TaskID: id, SrcCID: "c9", Status: types.TaskStatusStart, From: owner}); err != nil ||
		res.Code != types.CodePeerContinue {
		t.Fatalf("start from %s: %d %v", owner, res.Code, err)
	}
	if dt, _ := d.dfget.Get("c9", id); dt.Status != dfgettask.StatusRunning {
		t.Fatalf("c9's status %s after its start, want %s", dt.Status, dfgettask.StatusRunning)
	}
}
