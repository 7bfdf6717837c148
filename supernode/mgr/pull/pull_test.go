package pull

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

type deps struct {
	tasks  *MockTasks
	sched  *MockScheduler
	prog   *MockProgress
	dfget  *dfgettask.Manager
	peers  *peer.Manager
	cdn    *MockDigests
	prober *MockProber
	m      *Manager
	// snap is the task's state the task manager answers with.
	snap task.Snapshot
}

func newDeps(t *testing.T, wait time.Duration) *deps {
	ctrl := gomock.NewController(t)
	d := &deps{tasks: NewMockTasks(ctrl), sched: NewMockScheduler(ctrl), prog: NewMockProgress(ctrl),
		dfget: dfgettask.New(dfgettask.Config{SuperPID: "super"}, dfgettask.Metrics{}), peers: peer.New(nil, nil), cdn: NewMockDigests(ctrl), prober: NewMockProber(ctrl)}
	d.m = New(Config{AdvertiseIP: "10.0.0.1", DownloadPort: 8001, PieceWait: wait}, Deps{
		Tasks: d.tasks, Scheduler: d.sched, Progress: d.prog, Dfget: d.dfget, Peers: d.peers, Digests: d.cdn, Prober: d.prober,
	}, Metrics{})
	d.prog.EXPECT().SuperPID().Return("super").AnyTimes()
	return d
}

// idleWaiter lets Pull register long-poll waiters that never fire.
func idleWaiter(d *deps) {
	d.prog.EXPECT().Waiter(gomock.Any()).Return(make(chan struct{}), func() {}).AnyTimes()
}

// running makes c1 a client of a running 3-piece task and returns its ID.
func running(t *testing.T, d *deps) string {
	t.Helper()
	id := taskid.ID("http://o/f", "", "", map[string]string{})
	d.snap = task.Snapshot{ID: id, Status: types.CDNStatusRunning, Changed: make(chan struct{}), PieceSize: 4 << 20,
		HTTPLength: 10, RawURL: "http://o/f?x=1"}
	known := func(got string) (task.Snapshot, error) {
		if got != id {
			return task.Snapshot{}, &task.Error{Code: types.CodeTargetNotFound, Err: errors.New("task not found")}
		}
		return d.snap, nil
	}
	d.tasks.EXPECT().Snapshot(gomock.Any()).DoAndReturn(known).AnyTimes()
	d.tasks.EXPECT().Access(gomock.Any()).DoAndReturn(known).AnyTimes()
	d.tasks.EXPECT().SuperCID(id).Return(types.SuperNodeCIDPrefix + "10.0.0.1~" + id).AnyTimes()
	d.cdn.EXPECT().PrepareFileMd5(id).AnyTimes()
	if err := d.dfget.Add(dfgettask.Task{CID: "c1", TaskID: id, PeerID: "p1", Path: "/peer/file/c1", SupernodeIP: "10.9.9.9"}); err != nil {
		t.Fatal(err)
	}
	return id
}

// cdnDone finishes the task's CDN.
func (d *deps) cdnDone(realMd5 string, fileLength int64) {
	d.snap.Status, d.snap.RealMd5, d.snap.FileLength = types.CDNStatusSuccess, realMd5, fileLength
	d.snap.Changed = make(chan struct{})
}

func TestPullPieceInfos(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	p2, err := d.peers.Register(types.PeerCreateRequest{IP: "10.1.1.2", HostName: "h2", Port: 15002})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.dfget.Add(dfgettask.Task{CID: "c2", TaskID: id, PeerID: p2, Path: "/peer/file/c2"}); err != nil {
		t.Fatal(err)
	}
	// "gone" has neither a peer nor a client of the task any more.
	d.sched.EXPECT().Schedule(id, "c1").Return([]scheduler.Assignment{{Num: 0, DstPID: "super"}, {Num: 1, DstPID: p2}, {Num: 2, DstPID: "gone"}}, nil)
	d.cdn.EXPECT().PieceMd5(id, gomock.Any()).Return("m:9").AnyTimes()
	d.prog.EXPECT().Unassign(id, "c1", 2)  // the load is given back (unlike v1)
	d.prog.EXPECT().DropHolder(id, "gone") // and it is not picked again
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: types.TaskStatusStart, Result: types.ResultInvalid})
	if err != nil || res.Code != types.CodePeerContinue {
		t.Fatalf("pull: %d %v", res.Code, err)
	}
	ps := res.Data().([]types.PieceInfo)
	want0 := types.PieceInfo{Range: "0-14", PieceNum: 0, PieceSize: 4 << 20, PieceMd5: "m:9", CID: "cdnnode:10.0.0.1~" + id,
		PeerIP: "10.9.9.9", PeerPort: 8001, Path: "/download/" + id[:3] + "/" + id}
	if len(ps) != 2 || ps[0] != want0 || ps[1].CID != "c2" || ps[1].PeerIP != "10.1.1.2" || ps[1].PeerPort != 15002 || ps[1].Path != "/peer/file/c2" {
		t.Fatalf("pieces %+v", ps)
	}
}

func TestPullReportsAndErrors(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	// A running report updates progress with the piece number from the
	// range; a 503 is v1's SEMISUC (had, not yet a holder).
	d.prog.EXPECT().Update(id, "c1", 1, progress.SemiSuccess).Return("super", nil)
	d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrLimited)
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: types.TaskStatusRunning,
		Result: types.ResultSemiSuc, Range: "4194304-8388607"})
	if err != nil || res.Code != types.CodePeerContinue || res.Data() != nil {
		t.Fatalf("limited: %d %v %v", res.Code, res.Data(), err)
	}
	for _, tc := range []struct {
		q    Query
		code int
	}{
		{Query{TaskID: "nope", SrcCID: "c1", Status: 700}, types.CodeTargetNotFound},
		{Query{TaskID: id, SrcCID: "c1", Status: 799}, types.CodeParamError},
		{Query{TaskID: id, SrcCID: "c1", Status: 701, Result: 502, Range: "0-9"}, types.CodeParamError},
		{Query{TaskID: id, SrcCID: "c1", Status: 701, Result: 501, Range: "3-9"}, types.CodeParamError},
	} {
		if _, err := d.m.Pull(context.Background(), tc.q); task.CodeOf(err) != tc.code {
			t.Errorf("%+v: %v, want code %d", tc.q, err, tc.code)
		}
	}
	if _, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "zz", Status: 700}); task.CodeOf(err) != types.CodeTargetNotFound {
		t.Errorf("unknown client: %v", err)
	}
}

func TestPullLongPollWakesUp(t *testing.T) {
	d := newDeps(t, 2*time.Second)
	id := running(t, d)
	wake := make(chan struct{}, 1)
	d.prog.EXPECT().Waiter(id).Return(wake, func() {}).AnyTimes()
	gomock.InOrder(
		d.sched.EXPECT().Schedule(id, "c1").DoAndReturn(func(string, string) ([]scheduler.Assignment, error) {
			wake <- struct{}{} // a piece appears while the call waits
			return nil, scheduler.ErrWait
		}),
		d.sched.EXPECT().Schedule(id, "c1").Return([]scheduler.Assignment{{Num: 0, DstPID: "super"}}, nil),
	)
	d.cdn.EXPECT().PieceMd5(id, 0).Return("m:9")
	start := time.Now()
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || res.Code != types.CodePeerContinue || time.Since(start) > time.Second {
		t.Fatalf("long poll: %d %v after %s", res.Code, err, time.Since(start))
	}
	// Nothing comes: 602 after the wait, or at once when the request ends.
	d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrWait).AnyTimes()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res, err := d.m.Pull(ctx, Query{TaskID: id, SrcCID: "c1", Status: 700}); err != nil || res.Code != types.CodePeerWait {
		t.Fatalf("wait: %d %v", res.Code, err)
	}
}

// After the CDN finished, a 602 (holders busy, or a piece only being
// fetched) is still long-polled: the waiter is woken when a peer reports a
// piece, and the hold is in the result for the Server-Timing header.
func TestPullLongPollAfterCDN(t *testing.T) {
	d := newDeps(t, 2*time.Second)
	id := running(t, d)
	d.cdnDone("md5", 15)
	wake := make(chan struct{}, 1)
	d.prog.EXPECT().Waiter(id).Return(wake, func() {}).AnyTimes()
	gomock.InOrder(
		d.sched.EXPECT().Schedule(id, "c1").DoAndReturn(func(string, string) ([]scheduler.Assignment, error) {
			go func() { time.Sleep(20 * time.Millisecond); wake <- struct{}{} }()
			return nil, scheduler.ErrBusy
		}),
		d.sched.EXPECT().Schedule(id, "c1").Return([]scheduler.Assignment{{Num: 1, DstPID: "super"}}, nil),
	)
	d.cdn.EXPECT().PieceMd5(id, 1).Return("m:9")
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || res.Code != types.CodePeerContinue || res.Held < 10*time.Millisecond || res.Held > time.Second {
		t.Fatalf("long poll after the CDN: %d %v, held %v", res.Code, err, res.Held)
	}
}

func TestPullFinish(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	d.cdnDone("md5", 15)
	d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrDone)
	d.prog.EXPECT().EndStream("c1")
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || res.Code != types.CodePeerFinish || res.Data().(types.FinishData) != (types.FinishData{Md5: "md5", FileLength: 15}) {
		t.Fatalf("finish: %d %v %v", res.Code, res.Data(), err)
	}
	// A finish report answers with the file's digest, or an error.
	d.prog.EXPECT().EndStream("c1").Times(2)
	res, err = d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: types.TaskStatusFinish, Result: types.ResultSuc})
	if err != nil || res.Code != types.CodePeerFinish || *res.Finish != (types.FinishData{Md5: "md5", FileLength: 15}) {
		t.Fatalf("finish report: %+v %v", res, err)
	}
	if _, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: types.TaskStatusFinish, Result: types.ResultFail}); task.CodeOf(err) != types.CodeSystemError {
		t.Fatalf("failure report: %v", err)
	}
}

// A failed piece from a peer makes the supernode probe that peer's server
// (supernode/mgr/peer.Prober); a piece from the supernode does not.
func TestPullFailedPieceProbesPeer(t *testing.T) {
	for _, tc := range []struct {
		dst   string
		probe bool
	}{
		{"p2", true},
		{"super", false},
	} {
		t.Run(tc.dst, func(t *testing.T) {
			d := newDeps(t, 0)
			idleWaiter(d)
			id := running(t, d)
			d.prog.EXPECT().Update(id, "c1", 1, progress.Failed).Return(tc.dst, nil)
			if tc.probe {
				d.prober.EXPECT().Probe(tc.dst)
			}
			d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrLimited)
			if _, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", DstCID: "c2", Status: types.TaskStatusRunning,
				Result: types.ResultFail, Range: "4194304-8388607"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A failure that names no holder is a give-back (a stream's window was
// full): progress is told so, and decides whom, if anyone, to charge. A
// stream's give-back charges no one and probes no one; another client's
// is a failure of the piece's holder, probed as such.
func TestPullFailureWithoutDstIsGiveBack(t *testing.T) {
	for _, dst := range []string{"", "p2"} {
		t.Run("dst="+dst, func(t *testing.T) {
			d := newDeps(t, 0)
			idleWaiter(d)
			id := running(t, d)
			d.prog.EXPECT().Update(id, "c1", 1, progress.GivenBack).Return(dst, nil)
			if dst != "" {
				d.prober.EXPECT().Probe(dst)
			}
			d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrLimited)
			if _, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: types.TaskStatusRunning,
				Result: types.ResultFail, Range: "4194304-8388607"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A client that asked for BLAKE3 at registration gets pieceDigest on every
// piece offered, and no pieceMd5 (its md5 is not even looked up, so never
// computed for it); a piece whose BLAKE3 the supernode does not know is not
// offered. A client that did not ask never gets the field
// (TestPullPieceInfos: PieceDigest is not even looked up).
func TestPullPieceDigestOnlyWhenAsked(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	if err := d.dfget.Add(dfgettask.Task{CID: "c3", TaskID: id, PeerID: "p3", Path: "/peer/file/c3", Blake3: true}); err != nil {
		t.Fatal(err)
	}
	b3 := digest.Sum(digest.BLAKE3, []byte("piece 0"))
	d.sched.EXPECT().Schedule(id, "c3").Return([]scheduler.Assignment{{Num: 0, DstPID: "super"}, {Num: 1, DstPID: "super"}}, nil)
	d.cdn.EXPECT().PieceMd5(id, gomock.Any()).Times(0)
	d.cdn.EXPECT().PieceDigest(id, 0).Return(b3)
	d.cdn.EXPECT().PieceDigest(id, 1).Return(digest.Digest{})
	d.prog.EXPECT().Unassign(id, "c3", 1)
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c3", Status: types.TaskStatusStart, Result: types.ResultInvalid})
	if err != nil || res.Code != types.CodePeerContinue {
		t.Fatalf("pull: %d %v", res.Code, err)
	}
	ps := res.Data().([]types.PieceInfo)
	if len(ps) != 1 || ps[0].PieceNum != 0 || ps[0].PieceMd5 != "" || ps[0].PieceDigest != b3.String() {
		t.Fatalf("pieces %+v", ps)
	}
	if got, err := digest.Parse(ps[0].PieceDigest); err != nil || got != b3 {
		t.Fatalf("pieceDigest %q: %v", ps[0].PieceDigest, err)
	}
}

// A piece whose md5 the CDN does not know (yet) is not offered, to any
// client: its holder's load is given back and the client waits.
func TestPullNoPieceWithoutMd5(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	d.sched.EXPECT().Schedule(id, "c1").Return([]scheduler.Assignment{{Num: 0, DstPID: "super"}}, nil)
	d.cdn.EXPECT().PieceMd5(id, 0).Return("")
	d.prog.EXPECT().Unassign(id, "c1", 0)
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: types.TaskStatusStart, Result: types.ResultInvalid})
	if err != nil || res.Code != types.CodePeerWait || res.Data() != nil {
		t.Fatalf("pull: %d %v %v", res.Code, res.Data(), err)
	}
}

// The 600's md5 when the CDN computed none: a client that did not ask for
// BLAKE3 gets the md5 computed on demand, one that asked gets none (and the
// md5 is not computed for it); a md5 still being computed after md5Wait is
// a 602, so the client polls again instead of timing out.
func TestPullFinishMd5OnDemand(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	if err := d.dfget.Add(dfgettask.Task{CID: "c3", TaskID: id, PeerID: "p3", Path: "/peer/file/c3", Blake3: true}); err != nil {
		t.Fatal(err)
	}
	d.cdnDone("", 15)
	d.sched.EXPECT().Schedule(id, gomock.Any()).Return(nil, scheduler.ErrDone).AnyTimes()
	d.prog.EXPECT().EndStream(gomock.Any()).AnyTimes()
	d.cdn.EXPECT().FileMd5(gomock.Any(), id).Return("lazy", nil)
	res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || res.Code != types.CodePeerFinish || res.Finish.Md5 != "lazy" {
		t.Fatalf("v1 client finish: %+v %v", res, err)
	}
	res, err = d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c3", Status: 700})
	if err != nil || res.Code != types.CodePeerFinish || res.Finish.Md5 != "" || res.Finish.FileLength != 15 {
		t.Fatalf("blake3 client finish: %+v %v", res, err)
	}
	d.cdn.EXPECT().FileMd5(gomock.Any(), id).DoAndReturn(func(ctx context.Context, _ string) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	start := time.Now()
	res, err = d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || res.Code != types.CodePeerWait || time.Since(start) < md5Wait {
		t.Fatalf("slow md5: %+v %v after %s", res, err, time.Since(start))
	}
	d.cdn.EXPECT().FileMd5(gomock.Any(), id).Return("", errors.New("cache damaged"))
	if _, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: "c1", Status: 700}); task.CodeOf(err) != types.CodeSystemError {
		t.Fatalf("damaged cache: %v", err)
	}
}

// noShare goes only to a stream that negotiated BLAKE3, and only while
// Alone says no other client lacks a piece; a file-mode client and a v1
// stream never see it.
func TestPullNoShareOnlyForALoneStream(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	for _, c := range []dfgettask.Task{
		{CID: "s", TaskID: id, PeerID: "ps", Path: "/peer/file/s", Blake3: true, Stream: true},
		{CID: "v1s", TaskID: id, PeerID: "pv", Path: "/peer/file/v1s", Stream: true},
		{CID: "f", TaskID: id, PeerID: "pf", Path: "/peer/file/f", Blake3: true},
	} {
		if err := d.dfget.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	b3 := digest.Sum(digest.BLAKE3, []byte("piece 0"))
	d.cdn.EXPECT().PieceDigest(id, 0).Return(b3).AnyTimes()
	d.cdn.EXPECT().PieceMd5(id, 0).Return("m:9").AnyTimes()
	d.sched.EXPECT().Schedule(id, gomock.Any()).Return([]scheduler.Assignment{{Num: 0, DstPID: "super"}}, nil).AnyTimes()
	pull := func(cid string) types.PieceInfo {
		t.Helper()
		res, err := d.m.Pull(context.Background(), Query{TaskID: id, SrcCID: cid, Status: types.TaskStatusStart, Result: types.ResultInvalid})
		if err != nil || res.Code != types.CodePeerContinue {
			t.Fatalf("pull %s: %d %v", cid, res.Code, err)
		}
		return res.Data().([]types.PieceInfo)[0]
	}
	d.prog.EXPECT().Alone(id, "s").Return(true)
	if !pull("s").NoShare {
		t.Error("a lone BLAKE3 stream was not told noShare")
	}
	d.prog.EXPECT().Alone(id, "s").Return(false)
	if pull("s").NoShare {
		t.Error("noShare while another client lacks pieces")
	}
	d.prog.EXPECT().Alone(gomock.Any(), gomock.Any()).Return(true).AnyTimes()
	if pull("v1s").NoShare || pull("f").NoShare {
		t.Error("noShare sent to a v1 stream or a file-mode client")
	}
}
