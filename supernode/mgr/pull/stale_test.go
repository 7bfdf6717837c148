package pull

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// maxSchedules bounds the scheduler runs of one long-poll that finds
// nothing it can offer: a few, not one per wake-up it gave itself.
const maxSchedules = 3

// realPull is a pull over the real progress store, scheduler and
// registries, for the one-piece task "t" the CDN has written; md5 is the
// piece's md5 as the CDN gives it, each look-up counted in md5s.
type realPull struct {
	prog   *progress.Manager
	peers  *peer.Manager
	dfgets *dfgettask.Manager
	md5s   atomic.Int64
	m      *Manager
}

const staleTask = "t"

func newRealPull(t *testing.T, md5 string) *realPull {
	ctrl := gomock.NewController(t)
	r := &realPull{prog: progress.New("super"), peers: peer.New(nil, nil), dfgets: dfgettask.New(dfgettask.Config{SuperPID: "super"}, dfgettask.Metrics{})}
	r.prog.InitTask(staleTask)
	r.prog.SetCDNPiece(staleTask, 0)
	tasks, cdn := NewMockTasks(ctrl), NewMockDigests(ctrl)
	snap := task.Snapshot{ID: staleTask, Status: types.CDNStatusRunning, Changed: make(chan struct{}), PieceSize: 4 << 20, HTTPLength: 10}
	tasks.EXPECT().Access(staleTask).Return(snap, nil).AnyTimes()
	tasks.EXPECT().Snapshot(staleTask).Return(snap, nil).AnyTimes()
	tasks.EXPECT().SuperCID(staleTask).Return("cdnnode:x~t").AnyTimes()
	cdn.EXPECT().PrepareFileMd5(staleTask).AnyTimes()
	cdn.EXPECT().PieceMd5(staleTask, 0).DoAndReturn(func(string, int) string {
		r.md5s.Add(1)
		return md5
	}).AnyTimes()
	// The real scheduler, behind the mock only to bound its runs: the
	// calls below are all c1's, one Pull each.
	real := scheduler.New(r.prog, scheduler.Config{
		Limits: progress.Limits{DownLimit: 4, UpLimit: 5, SuperLimit: 16}, EliminationLimit: 5, FailureCountLimit: 5})
	sched := NewMockScheduler(ctrl)
	sched.EXPECT().Schedule(staleTask, "c1").DoAndReturn(real.Schedule).MinTimes(1).MaxTimes(maxSchedules)
	r.m = New(Config{AdvertiseIP: "10.0.0.1", DownloadPort: 8001, PieceWait: 300 * time.Millisecond},
		Deps{Tasks: tasks, Scheduler: sched, Progress: r.prog, Dfget: r.dfgets, Peers: r.peers, Digests: cdn,
			Prober: NewMockProber(ctrl)}, Metrics{})
	return r
}

// client registers client cid of the task on a new peer, as a
// registration does, and returns the peer's ID.
func (r *realPull) client(t *testing.T, cid, ip string) string {
	t.Helper()
	pid, err := r.peers.Register(types.PeerCreateRequest{IP: ip, HostName: "h-" + cid, Port: 15000})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dfgets.Add(dfgettask.Task{CID: cid, TaskID: staleTask, PeerID: pid, Path: "/peer/file/" + cid}); err != nil {
		t.Fatal(err)
	}
	if err := r.prog.InitClient(staleTask, cid, pid, false, false, 0); err != nil {
		t.Fatal(err)
	}
	return pid
}

// pull is one /peer/task call of client c1; the scheduler mock fails the
// test past maxSchedules runs.
func (r *realPull) pull(t *testing.T) Result {
	t.Helper()
	res, err := r.m.Pull(context.Background(), Query{TaskID: staleTask, SrcCID: "c1", Status: types.TaskStatusStart})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	return res
}

// A holder that can no longer serve the task (its peer was deleted, or its
// client registered again as another peer, so the supernode cannot say
// where it is) has no load, so it was picked for the piece every time; the
// call gave the slot back, which woke its own long-poll, and it went round
// tens of thousands of times before answering 602, and never offered the
// piece. Such a holder is dropped: the piece comes from the supernode, at
// the first call.
func TestPullStaleHolderIsDroppedNotSpun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale func(t *testing.T, r *realPull, pid string)
	}{
		{"peer deleted", func(t *testing.T, r *realPull, pid string) {
			if err := r.peers.Delete(pid); err != nil {
				t.Fatal(err)
			}
		}},
		{"client registered again", func(t *testing.T, r *realPull, _ string) { r.client(t, "c0", "10.0.0.5") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRealPull(t, "m:10")
			gone := r.client(t, "c0", "10.0.0.5")
			if _, err := r.prog.Update(staleTask, "c0", 0, progress.Success); err != nil {
				t.Fatal(err)
			}
			tc.stale(t, r, gone)
			r.client(t, "c1", "10.0.0.6")
			res := r.pull(t)
			if res.Code != types.CodePeerContinue || len(res.Pieces) != 1 || res.Pieces[0].CID != "cdnnode:x~t" {
				t.Fatalf("got code %d, pieces %+v; want 601 with piece 0 from the supernode", res.Code, res.Pieces)
			}
			if slices.Contains(r.prog.Holders(staleTask, 0), gone) {
				t.Errorf("stale peer %s is still a holder of piece 0", gone)
			}
		})
	}
}

// A piece the call cannot offer (its md5 is unknown: a damaged cache has
// none) gave its slot back and woke the call's own long-poll, which
// scheduled it again at once: a full core spent, and the piece re-hashed
// from disk on every turn. The call now waits for a real change.
func TestPullUnofferablePieceWaitsNotSpins(t *testing.T) {
	r := newRealPull(t, "")
	r.client(t, "c1", "10.0.0.6")
	start := time.Now()
	res := r.pull(t)
	if res.Code != types.CodePeerWait || len(res.Pieces) != 0 {
		t.Fatalf("got code %d, pieces %+v; want 602", res.Code, res.Pieces)
	}
	if r.md5s.Load() > maxSchedules {
		t.Errorf("%d md5 look-ups in one call, want at most %d", r.md5s.Load(), maxSchedules)
	}
	if held := time.Since(start); held < 250*time.Millisecond {
		t.Errorf("answered after %s: the long-poll should wait for a change", held)
	}
	if peer, super := r.prog.Loads(staleTask, "super"); peer != 0 || super != 0 {
		t.Errorf("loads %d/%d after the call, want the slot given back", peer, super)
	}
}
