package pull

import (
	"context"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// A client long-polling /peer/task while the CDN runs learns at once that
// it failed (a cache write error, say): the task's status change wakes the
// call, which answers CodeSystemError (v1's CDNFail mapping) instead of
// holding the client the whole PieceWait for a piece that never comes.
func TestPullLongPollLearnsCDNFailure(t *testing.T) {
	d := newDeps(t, 10*time.Second)
	id := running(t, d)
	changed := make(chan struct{})
	d.snap.Changed = changed
	d.prog.EXPECT().Waiter(id).Return(make(chan struct{}), func() {}).AnyTimes()
	d.sched.EXPECT().Schedule(id, "c1").DoAndReturn(func(string, string) ([]scheduler.Assignment, error) {
		// The CDN fails while the call looks for a piece.
		d.snap.Status, d.snap.Changed = types.CDNStatusFailed, make(chan struct{})
		close(changed)
		return nil, scheduler.ErrWait
	})
	begin := time.Now()
	_, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: types.TaskStatusStart})
	if err == nil || task.CodeOf(err) != types.CodeSystemError || time.Since(begin) > time.Second {
		t.Fatalf("a client waiting on a failed CDN got %v (code %d) after %s", err, task.CodeOf(err), time.Since(begin))
	}
}
