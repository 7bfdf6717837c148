package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/scheduler"
)

type deps struct {
	cdn   *MockCDN
	prog  *MockProgress
	sched *MockScheduler
	peers *MockPeers
	dfget *MockDfgetTasks
	m     *Manager
	// cdnDone is the completion callback of the last CDN started by running.
	cdnDone func(cdn.Result)
}

func newDeps(t *testing.T, wait time.Duration) *deps {
	ctrl := gomock.NewController(t)
	d := &deps{cdn: NewMockCDN(ctrl), prog: NewMockProgress(ctrl), sched: NewMockScheduler(ctrl),
		peers: NewMockPeers(ctrl), dfget: NewMockDfgetTasks(ctrl)}
	log := logrus.New()
	log.SetOutput(io.Discard)
	d.m = New(Config{AdvertiseIP: "10.0.0.1", DownloadPort: 8001, FailAccessInterval: time.Minute, PieceWait: wait},
		d.cdn, d.prog, d.sched, d.peers, d.dfget, Metrics{}, log)
	d.prog.EXPECT().SuperPID().Return("super").AnyTimes()
	return d
}

// idleWaiter lets Pull register long-poll waiters that never fire.
func idleWaiter(d *deps) {
	d.prog.EXPECT().Waiter(gomock.Any()).Return(make(chan struct{}), func() {}).AnyTimes()
}

func validReq() types.RegisterRequest {
	return types.RegisterRequest{RawURL: "http://o/f?x=1", TaskURL: "http://o/f", CID: "c1", IP: "127.0.0.1", Port: 15001,
		Path: "/peer/file/f-1", HostName: "h", SuperNodeIP: "10.9.9.9"}
}

func TestRegisterValidation(t *testing.T) {
	d := newDeps(t, 0)
	for _, tc := range []struct {
		name string
		mod  func(*types.RegisterRequest)
	}{
		{"empty url", func(r *types.RegisterRequest) { r.RawURL = "" }},
		{"ftp", func(r *types.RegisterRequest) { r.RawURL = "ftp://o/f" }},
		{"file", func(r *types.RegisterRequest) { r.RawURL = "file:///etc/passwd" }},
		{"no cid", func(r *types.RegisterRequest) { r.CID = "" }},
		{"no path", func(r *types.RegisterRequest) { r.Path = "" }},
		{"port", func(r *types.RegisterRequest) { r.Port = 70000 }},
		{"ipv6", func(r *types.RegisterRequest) { r.IP = "::1" }},
		{"header", func(r *types.RegisterRequest) { r.Headers = []string{"bad"} }},
		{"task url scheme", func(r *types.RegisterRequest) { r.TaskURL = "gopher://x" }},
		{"negative start piece", func(r *types.RegisterRequest) { r.StreamMode, r.StartPiece = true, -1 }},
		{"start piece without stream", func(r *types.RegisterRequest) { r.StartPiece = 3 }},
		{"multi-range", func(r *types.RegisterRequest) { r.Headers = []string{"Range: bytes=0-9,20-29"} }},
		{"two range headers", func(r *types.RegisterRequest) { r.Headers = []string{"Range: bytes=0-9", "range: bytes=20-29"} }},
		{"range unit", func(r *types.RegisterRequest) { r.Headers = []string{"Range: items=0-9"} }},
		{"range spec", func(r *types.RegisterRequest) { r.Headers = []string{"Range: bytes=a-b"} }},
		{"long raw url", func(r *types.RegisterRequest) { r.RawURL = "http://o/" + strings.Repeat("a", MaxURLLen) }},
		{"long task url", func(r *types.RegisterRequest) { r.TaskURL = "http://o/" + strings.Repeat("a", MaxURLLen) }},
		{"long cid", func(r *types.RegisterRequest) { r.CID = strings.Repeat("c", MaxFieldLen+1) }},
		{"many headers", func(r *types.RegisterRequest) { r.Headers = make([]string, MaxHeaders+1) }},
		{"long header", func(r *types.RegisterRequest) { r.Headers = []string{"X: " + strings.Repeat("v", MaxHeaderLen)} }},
		{"md5 not hex", func(r *types.RegisterRequest) { r.Md5 = strings.Repeat("g", 32) }},
		{"md5 short", func(r *types.RegisterRequest) { r.Md5 = "451d" }},
	} {
		r := validReq()
		tc.mod(&r)
		if _, err := d.m.Register(RegisterParams{Req: r}); CodeOf(err) != types.CodeParamError {
			t.Errorf("%s: %v (code %d), want 501", tc.name, err, CodeOf(err))
		}
	}
}

func TestRegisterStartsCDNOnce(t *testing.T) {
	d := newDeps(t, 0)
	id := ID("http://o/f", "", "", map[string]string{})
	d.prog.EXPECT().InitTask(id)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(src cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		if src.TaskID != id || src.RawURL != "http://o/f?x=1" || src.TaskURL != "http://o/f" {
			t.Errorf("source %+v", src)
		}
		return cdn.Started{HTTPFileLength: 300 << 20, PieceSize: piece.ComputeSize(300 << 20)}, nil
	}).Times(1)
	d.peers.EXPECT().Register(gomock.Any()).Return("p1", nil)
	d.peers.EXPECT().Register(gomock.Any()).Return("p2", nil)
	d.dfget.EXPECT().Add(gomock.Any()).DoAndReturn(func(dt dfgettask.Task) error {
		if dt.SupernodeIP != "10.9.9.9" || dt.Path != "/peer/file/f-1" || dt.TaskID != id {
			t.Errorf("dfget task %+v", dt)
		}
		return nil
	}).Times(2)
	d.prog.EXPECT().InitClient(id, "c1", "p1", false, false, 0, 0)
	d.prog.EXPECT().InitClient(id, "c2", "p2", false, true, 3, 0)
	res, err := d.m.Register(RegisterParams{Req: validReq()})
	if err != nil || res.TaskID != id || res.FileLength != 300<<20 || res.PieceSize != 5<<20 || res.CDNSource != "supernode" {
		t.Fatalf("register: %+v %v", res, err)
	}
	r2 := validReq()
	r2.CID, r2.StreamMode, r2.WindowSize = "c2", true, 3
	if _, err := d.m.Register(RegisterParams{Req: r2}); err != nil {
		t.Fatal(err)
	}
}

// An expected md5 in upper case is the same task, and the same CDN
// check, as in lower case: hex digits compare case-insensitively.
func TestRegisterMd5IsCaseInsensitive(t *testing.T) {
	d := newDeps(t, 0)
	const lower = "451d1c1c12fb4b3c8bd2b94e2c73f17f"
	id := ID("http://o/f", lower, "", map[string]string{})
	d.prog.EXPECT().InitTask(id)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(src cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		if src.Md5 != lower {
			t.Errorf("cdn asked to check md5 %q, want %q", src.Md5, lower)
		}
		return cdn.Started{HTTPFileLength: 10, PieceSize: piece.ComputeSize(10)}, nil
	}).Times(1)
	d.peers.EXPECT().Register(gomock.Any()).Return("p1", nil).Times(2)
	d.dfget.EXPECT().Add(gomock.Any()).Return(nil).Times(2)
	d.prog.EXPECT().InitClient(id, gomock.Any(), "p1", false, false, 0, 0).Times(2)
	for i, md5 := range []string{strings.ToUpper(lower), lower} {
		r := validReq()
		r.CID, r.Md5 = fmt.Sprintf("c%d", i), md5
		res, err := d.m.Register(RegisterParams{Req: r})
		if err != nil || res.TaskID != id {
			t.Fatalf("register with md5 %s: task %q, %v; want %q", md5, res.TaskID, err, id)
		}
	}
}

func TestRegisterSourceErrorIsRemembered(t *testing.T) {
	d := newDeps(t, 0)
	d.prog.EXPECT().InitTask(gomock.Any())
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).Return(cdn.Started{}, &cdn.SourceError{URL: "http://o/f", Status: 404}).Times(1)
	for range 2 {
		_, err := d.m.Register(RegisterParams{Req: validReq()})
		if CodeOf(err) != types.CodeURLNotReachable || !strings.Contains(err.Error(), "404") {
			t.Fatalf("got %v", err)
		}
	}
	// After the interval the source is tried again.
	d.m.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).Return(cdn.Started{}, errors.New("disk full"))
	if _, err := d.m.Register(RegisterParams{Req: validReq()}); CodeOf(err) != types.CodeSystemError {
		t.Fatalf("got %v", err)
	}
}

// running registers c1 on a running 3-piece task and returns its ID.
func running(t *testing.T, d *deps) string {
	t.Helper()
	d.prog.EXPECT().InitTask(gomock.Any())
	var done func(cdn.Result)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(_ cdn.Source, f func(cdn.Result)) (cdn.Started, error) {
		done = f
		return cdn.Started{HTTPFileLength: 10, PieceSize: 4 << 20}, nil
	})
	d.peers.EXPECT().Register(gomock.Any()).Return("p1", nil)
	d.dfget.EXPECT().Add(gomock.Any()).Return(nil)
	d.prog.EXPECT().InitClient(gomock.Any(), "c1", "p1", false, false, 0, 0)
	res, err := d.m.Register(RegisterParams{Req: validReq()})
	if err != nil {
		t.Fatal(err)
	}
	d.cdnDone = done
	d.dfget.EXPECT().Get("c1", res.TaskID).Return(dfgettask.Task{CID: "c1", TaskID: res.TaskID, PeerID: "p1", SupernodeIP: "10.9.9.9"}, nil).AnyTimes()
	d.dfget.EXPECT().SetStatus(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil).AnyTimes()
	return res.TaskID
}

func TestPullPieceInfos(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	d.sched.EXPECT().Schedule(id, "c1").Return([]scheduler.Assignment{{Num: 0, DstPID: "super"}, {Num: 1, DstPID: "p2"}, {Num: 2, DstPID: "gone"}}, nil)
	d.cdn.EXPECT().PieceMd5(id, gomock.Any()).Return("m:9").AnyTimes()
	d.dfget.EXPECT().GetByPeer("p2", id).Return(dfgettask.Task{CID: "c2", Path: "/peer/file/c2"}, nil)
	d.peers.EXPECT().Get("p2").Return(types.PeerInfo{IP: "10.1.1.2", Port: 15002}, nil)
	d.dfget.EXPECT().GetByPeer("gone", id).Return(dfgettask.Task{}, dfgettask.ErrNotFound)
	d.peers.EXPECT().Get("gone").Return(types.PeerInfo{}, errors.New("no"))
	d.prog.EXPECT().Unassign(id, "c1", 2) // the load is given back (v1 bug 7)
	code, data, err := d.m.Pull(context.Background(), PullQuery{TaskID: id, SrcCID: "c1", Status: types.TaskStatusStart, Result: types.ResultInvalid})
	if err != nil || code != types.CodePeerContinue {
		t.Fatalf("pull: %d %v", code, err)
	}
	ps := data.([]types.PieceInfo)
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
	code, data, err := d.m.Pull(context.Background(), PullQuery{TaskID: id, SrcCID: "c1", Status: types.TaskStatusRunning,
		Result: types.ResultSemiSuc, Range: "4194304-8388607"})
	if err != nil || code != types.CodePeerContinue || data != nil {
		t.Fatalf("limited: %d %v %v", code, data, err)
	}
	for _, tc := range []struct {
		q    PullQuery
		code int
	}{
		{PullQuery{TaskID: "nope", SrcCID: "c1", Status: 700}, types.CodeTargetNotFound},
		{PullQuery{TaskID: id, SrcCID: "c1", Status: 799}, types.CodeParamError},
		{PullQuery{TaskID: id, SrcCID: "c1", Status: 701, Result: 502, Range: "0-9"}, types.CodeParamError},
		{PullQuery{TaskID: id, SrcCID: "c1", Status: 701, Result: 501, Range: "3-9"}, types.CodeParamError},
	} {
		if _, _, err := d.m.Pull(context.Background(), tc.q); CodeOf(err) != tc.code {
			t.Errorf("%+v: %v, want code %d", tc.q, err, tc.code)
		}
	}
	d.dfget.EXPECT().Get("zz", id).Return(dfgettask.Task{}, dfgettask.ErrNotFound)
	if _, _, err := d.m.Pull(context.Background(), PullQuery{TaskID: id, SrcCID: "zz", Status: 700}); CodeOf(err) != types.CodeTargetNotFound {
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
	d.cdn.EXPECT().PieceMd5(id, 0).Return("")
	start := time.Now()
	code, _, err := d.m.Pull(context.Background(), PullQuery{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || code != types.CodePeerContinue || time.Since(start) > time.Second {
		t.Fatalf("long poll: %d %v after %s", code, err, time.Since(start))
	}
	// Nothing comes: 602 after the wait, or at once when the request ends.
	d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrWait).AnyTimes()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if code, _, err := d.m.Pull(ctx, PullQuery{TaskID: id, SrcCID: "c1", Status: 700}); err != nil || code != types.CodePeerWait {
		t.Fatalf("wait: %d %v", code, err)
	}
}

// After the CDN finished, a 602 (holders busy, or a piece only being
// fetched) is still long-polled: the waiter is woken when a peer reports a
// piece, and the hold is recorded for the Server-Timing header.
func TestPullLongPollAfterCDN(t *testing.T) {
	d := newDeps(t, 2*time.Second)
	id := running(t, d)
	d.cdnDone(cdn.Result{OK: true, RealMd5: "md5", FileLength: 15, PieceTotal: 3})
	wake := make(chan struct{}, 1)
	d.prog.EXPECT().Waiter(id).Return(wake, func() {}).AnyTimes()
	gomock.InOrder(
		d.sched.EXPECT().Schedule(id, "c1").DoAndReturn(func(string, string) ([]scheduler.Assignment, error) {
			go func() { time.Sleep(20 * time.Millisecond); wake <- struct{}{} }()
			return nil, scheduler.ErrBusy
		}),
		d.sched.EXPECT().Schedule(id, "c1").Return([]scheduler.Assignment{{Num: 1, DstPID: "super"}}, nil),
	)
	d.cdn.EXPECT().PieceMd5(id, 1).Return("")
	var held time.Duration
	code, _, err := d.m.Pull(WithHoldRecorder(context.Background(), &held), PullQuery{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || code != types.CodePeerContinue || held < 10*time.Millisecond || held > time.Second {
		t.Fatalf("long poll after the CDN: %d %v, held %v", code, err, held)
	}
}

func TestPullFinishAndStream(t *testing.T) {
	d := newDeps(t, 0)
	idleWaiter(d)
	id := running(t, d)
	d.cdnDone(cdn.Result{OK: true, RealMd5: "md5", FileLength: 15, PieceTotal: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := d.m.Wait(ctx, id); err != nil || st != types.CDNStatusSuccess {
		t.Fatalf("wait: %s %v", st, err)
	}
	d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrDone)
	d.prog.EXPECT().EndStream("c1")
	code, data, err := d.m.Pull(context.Background(), PullQuery{TaskID: id, SrcCID: "c1", Status: 700})
	if err != nil || code != types.CodePeerFinish || data.(types.FinishData) != (types.FinishData{Md5: "md5", FileLength: 15}) {
		t.Fatalf("finish: %d %v %v", code, data, err)
	}
	d.prog.EXPECT().AddHolder(id, "c1", 0).Return(nil)
	if err := d.m.StreamPiece(PieceReport{TaskID: id, CID: "c1", Range: "0-14"}, true); err != nil {
		t.Fatal(err)
	}
	d.prog.EXPECT().RemoveHolder(id, "c1", 0).Return(progress.ErrUnknownClient)
	if err := d.m.StreamPiece(PieceReport{TaskID: id, CID: "c1", Range: "0-14"}, false); CodeOf(err) != types.CodeTargetNotFound {
		t.Fatalf("remove holder error: %v", err)
	}
	if err := d.m.StreamPiece(PieceReport{TaskID: id, CID: "c1", Range: "x"}, true); CodeOf(err) != types.CodeParamError {
		t.Fatalf("bad range: %v", err)
	}
	d.prog.EXPECT().PeerDown("p1")
	if err := d.m.ServiceDown(id, "c1"); err != nil {
		t.Fatal(err)
	}
	info, err := d.m.Info(id)
	if err != nil || info.CdnStatus != types.CDNStatusSuccess || info.FileLength != 15 || info.HTTPFileLength != 10 || info.PieceTotal != 1 {
		t.Fatalf("info %+v %v", info, err)
	}
}

// A failed piece from a peer makes the supernode probe that peer's server:
// a refused connection marks it down at once; a server that still accepts
// is left to the failure counts.
func TestPullFailedPieceProbesPeer(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	for _, tc := range []struct {
		name string
		port int
		down bool
	}{
		{"refused", deadPort, true},
		{"accepting", live.Addr().(*net.TCPAddr).Port, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeps(t, 0)
			idleWaiter(d)
			id := running(t, d)
			d.prog.EXPECT().Update(id, "c1", 1, progress.Failed).Return("p2", nil)
			d.peers.EXPECT().Get("p2").Return(types.PeerInfo{IP: "127.0.0.1", Port: tc.port}, nil)
			if tc.down {
				d.prog.EXPECT().PeerDown("p2")
			}
			d.sched.EXPECT().Schedule(id, "c1").Return(nil, scheduler.ErrLimited)
			if _, _, err := d.m.Pull(context.Background(), PullQuery{TaskID: id, SrcCID: "c1", Status: types.TaskStatusRunning,
				Result: types.ResultFail, Range: "4194304-8388607"}); err != nil {
				t.Fatal(err)
			}
			d.m.WaitProbes()
		})
	}
}
