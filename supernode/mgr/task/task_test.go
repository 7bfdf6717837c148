package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

type deps struct {
	cdn   *MockCDN
	prog  *MockProgress
	peers *peer.Manager
	dfget *dfgettask.Manager
	m     *Manager
	// cdnDone is the completion callback of the last CDN started by running.
	cdnDone func(cdn.Result)
}

func newDeps(t *testing.T) *deps { return newDepsWith(t, dfgettask.Config{SuperPID: "super"}) }

// newDepsWith is newDeps with a dfget task registry configured by dc.
func newDepsWith(t *testing.T, dc dfgettask.Config) *deps {
	ctrl := gomock.NewController(t)
	d := &deps{cdn: NewMockCDN(ctrl), prog: NewMockProgress(ctrl), peers: peer.New(nil, nil), dfget: dfgettask.New(dc, dfgettask.Metrics{})}
	log := logrus.New()
	log.SetOutput(io.Discard)
	d.m = New(Config{AdvertiseIP: "10.0.0.1", FailAccessInterval: time.Minute}, d.cdn, d.prog, d.peers, d.dfget, Metrics{}, log)
	d.prog.EXPECT().SuperPID().Return("super").AnyTimes()
	return d
}

// peerOf matches the peer ID that registration recorded for client cid of
// task id (the registries are the real in-memory ones).
func (d *deps) peerOf(cid, id string) gomock.Matcher {
	return gomock.Cond(func(pid string) bool {
		dt, err := d.dfget.Get(cid, id)
		_, perr := d.peers.Get(pid)
		return err == nil && dt.PeerID == pid && perr == nil
	})
}

func validReq() types.RegisterRequest {
	return types.RegisterRequest{RawURL: "http://o/f?x=1", TaskURL: "http://o/f", CID: "c1", IP: "127.0.0.1", Port: 15001,
		Path: "/peer/file/f-1", HostName: "h", SuperNodeIP: "10.9.9.9"}
}

func TestRegisterValidation(t *testing.T) {
	d := newDeps(t)
	for _, tc := range []struct {
		name string
		mod  func(*types.RegisterRequest)
	}{
		{"empty url", func(r *types.RegisterRequest) { r.RawURL = "" }},
		{"ftp", func(r *types.RegisterRequest) { r.RawURL = "ftp://o/f" }},
		{"file", func(r *types.RegisterRequest) { r.RawURL = "file:///etc/passwd" }},
		{"no cid", func(r *types.RegisterRequest) { r.CID = "" }},
		{"supernode cid", func(r *types.RegisterRequest) { r.CID = types.SuperNodeCIDPrefix + "10.0.0.1~x" }},
		{"no path", func(r *types.RegisterRequest) { r.Path = "" }},
		{"port", func(r *types.RegisterRequest) { r.Port = 70000 }},
		{"ipv6", func(r *types.RegisterRequest) { r.IP = "::1" }},
		{"header", func(r *types.RegisterRequest) { r.Headers = []string{"bad"} }},
		{"task url scheme", func(r *types.RegisterRequest) { r.TaskURL = "gopher://x" }},
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
		{"unknown piece digest", func(r *types.RegisterRequest) { r.PieceDigest = "sha256" }},
		{"piece digest with value", func(r *types.RegisterRequest) { r.PieceDigest = "blake3:00" }},
		{"sha256 as piece digest", func(r *types.RegisterRequest) { r.PieceDigest = "SHA256" }},
		{"digest without algorithm", func(r *types.RegisterRequest) { r.Digest = strings.Repeat("a", 64) }},
		{"digest short", func(r *types.RegisterRequest) { r.Digest = "sha256:" + strings.Repeat("a", 63) }},
		{"digest not hex", func(r *types.RegisterRequest) { r.Digest = "sha256:" + strings.Repeat("z", 64) }},
		{"digest unknown algorithm", func(r *types.RegisterRequest) { r.Digest = "sha512:" + strings.Repeat("a", 128) }},
		{"digest md5", func(r *types.RegisterRequest) { r.Digest = "md5:" + strings.Repeat("a", 32) }},
		{"digest blake3", func(r *types.RegisterRequest) { r.Digest = "blake3:" + strings.Repeat("a", 64) }},
	} {
		r := validReq()
		tc.mod(&r)
		if _, err := d.m.Register(RegisterParams{Req: r}); CodeOf(err) != types.CodeParamError {
			t.Errorf("%s: %v (code %d), want 501", tc.name, err, CodeOf(err))
		}
	}
}

func TestRegisterStartsCDNOnce(t *testing.T) {
	d := newDeps(t)
	id := taskid.ID("http://o/f", "", "", map[string]string{})
	d.prog.EXPECT().InitTask(id)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(src cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		if src.TaskID != id || src.RawURL != "http://o/f?x=1" || src.TaskURL != "http://o/f" {
			t.Errorf("source %+v", src)
		}
		return cdn.Started{HTTPFileLength: 300 << 20, PieceSize: piece.ComputeSize(300 << 20)}, nil
	}).Times(1)
	d.prog.EXPECT().InitClient(id, "c1", d.peerOf("c1", id), false, false, 0)
	d.prog.EXPECT().InitClient(id, "c2", d.peerOf("c2", id), false, true, 3)
	res, err := d.m.Register(RegisterParams{Req: validReq()})
	if err != nil || res.TaskID != id || res.FileLength != 300<<20 || res.PieceSize != 5<<20 || res.CDNSource != "supernode" {
		t.Fatalf("register: %+v %v", res, err)
	}
	r2 := validReq()
	r2.CID, r2.StreamMode, r2.WindowSize = "c2", true, 3
	if _, err := d.m.Register(RegisterParams{Req: r2}); err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, cid := range []string{"c1", "c2"} {
		dt, err := d.dfget.Get(cid, id)
		if err != nil || dt.SupernodeIP != "10.9.9.9" || dt.Path != "/peer/file/f-1" || dt.TaskID != id {
			t.Errorf("dfget task %+v %v", dt, err)
		}
		pids = append(pids, dt.PeerID)
	}
	if pids[0] == pids[1] {
		t.Errorf("two registrations share peer %s", pids[0])
	}
}

// A startPiece is ignored, whatever its value: a stream resumed here is
// offered the pieces it wrote (from piece 0), so their digests prove this
// supernode's copy the version it wrote; started after them, another
// version of the same length would follow their head unchecked.
func TestRegisterIgnoresStartPiece(t *testing.T) {
	d := newDeps(t)
	id := taskid.ID("http://o/f", "", "", map[string]string{})
	d.prog.EXPECT().InitTask(id)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).Return(cdn.Started{HTTPFileLength: 10, PieceSize: piece.ComputeSize(10)}, nil)
	for i, tc := range []struct {
		stream bool
		start  int
	}{{true, 3}, {true, -1}, {false, 3}} {
		r := validReq()
		r.CID, r.StreamMode, r.StartPiece = fmt.Sprintf("c%d", i), tc.stream, tc.start
		d.prog.EXPECT().InitClient(id, r.CID, d.peerOf(r.CID, id), false, tc.stream, 0)
		if _, err := d.m.Register(RegisterParams{Req: r}); err != nil {
			t.Errorf("stream %t startPiece %d: %v", tc.stream, tc.start, err)
		}
	}
}

// An expected md5 in upper case is the same task, and the same CDN
// check, as in lower case: hex digits compare case-insensitively.
func TestRegisterMd5IsCaseInsensitive(t *testing.T) {
	d := newDeps(t)
	const lower = "451d1c1c12fb4b3c8bd2b94e2c73f17f"
	id := taskid.ID("http://o/f", lower, "", map[string]string{})
	d.prog.EXPECT().InitTask(id)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(src cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		if src.Md5 != lower {
			t.Errorf("cdn asked to check md5 %q, want %q", src.Md5, lower)
		}
		return cdn.Started{HTTPFileLength: 10, PieceSize: piece.ComputeSize(10)}, nil
	}).Times(1)
	for i, md5 := range []string{strings.ToUpper(lower), lower} {
		r := validReq()
		r.CID, r.Md5 = fmt.Sprintf("c%d", i), md5
		d.prog.EXPECT().InitClient(id, r.CID, d.peerOf(r.CID, id), false, false, 0)
		res, err := d.m.Register(RegisterParams{Req: r})
		if err != nil || res.TaskID != id {
			t.Fatalf("register with md5 %s: task %q, %v; want %q", md5, res.TaskID, err, id)
		}
	}
}

func TestRegisterSourceErrorIsRemembered(t *testing.T) {
	d := newDeps(t)
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
func running(t *testing.T, d *deps) string { return runningFrom(t, d, "") }

// runningFrom is running with c1 registering from address remote.
func runningFrom(t *testing.T, d *deps, remote string) string {
	t.Helper()
	d.prog.EXPECT().InitTask(gomock.Any())
	var done func(cdn.Result)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(_ cdn.Source, f func(cdn.Result)) (cdn.Started, error) {
		done = f
		return cdn.Started{HTTPFileLength: 10, PieceSize: 4 << 20}, nil
	})
	id := taskid.ID("http://o/f", "", "", map[string]string{})
	d.prog.EXPECT().InitClient(id, "c1", d.peerOf("c1", id), false, false, 0)
	res, err := d.m.Register(RegisterParams{Req: validReq(), RemoteIP: remote})
	if err != nil {
		t.Fatal(err)
	}
	d.cdnDone = done
	return res.TaskID
}

func TestFinishedTaskReports(t *testing.T) {
	d := newDeps(t)
	id := running(t, d)
	d.cdnDone(cdn.Result{OK: true, RealMd5: "md5", FileLength: 15, PieceTotal: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := d.m.Wait(ctx, id); err != nil || st != types.CDNStatusSuccess {
		t.Fatalf("wait: %s %v", st, err)
	}
	snap, err := d.m.Snapshot(id)
	if err != nil || snap.Status != types.CDNStatusSuccess || snap.RealMd5 != "md5" || snap.FileLength != 15 || snap.HTTPLength != 10 {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	// /peer/piece/suc: a holder; with share=0, had but not a holder.
	d.prog.EXPECT().Update(id, "c1", 0, progress.Success).Return("super", nil)
	d.prog.EXPECT().Update(id, "c1", 0, progress.SemiSuccess).Return("super", nil)
	for _, noShare := range []bool{false, true} {
		if err := d.m.PieceSuccess(PieceReport{TaskID: id, CID: "c1", DstCID: "x", Range: "0-14", NoShare: noShare}); err != nil {
			t.Fatalf("piece success (noShare %v): %v", noShare, err)
		}
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
	c1, _ := d.dfget.Get("c1", id)
	d.prog.EXPECT().PeerDown(c1.PeerID)
	if err := d.m.ServiceDown(id, "c1", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	info, err := d.m.Info(id)
	if err != nil || info.CdnStatus != types.CDNStatusSuccess || info.FileLength != 15 || info.HTTPFileLength != 10 || info.PieceTotal != 1 {
		t.Fatalf("info %+v %v", info, err)
	}
}

// The piece digest a client asks for is remembered on its dfget task:
// "blake3" in any case asks for BLAKE3; "" (a v1 dfget) and "md5" do not.
// An unknown name is refused with a 501 naming the field.
func TestRegisterPieceDigest(t *testing.T) {
	d := newDeps(t)
	id := taskid.ID("http://o/f", "", "", map[string]string{})
	d.prog.EXPECT().InitTask(id)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).Return(cdn.Started{HTTPFileLength: 10, PieceSize: piece.ComputeSize(10)}, nil)
	for i, tc := range []struct {
		name string
		want bool
	}{{"blake3", true}, {"BLAKE3", true}, {"", false}, {"md5", false}, {"MD5", false}} {
		r := validReq()
		r.CID, r.PieceDigest = fmt.Sprintf("c%d", i), tc.name
		d.prog.EXPECT().InitClient(id, r.CID, d.peerOf(r.CID, id), false, false, 0)
		if _, err := d.m.Register(RegisterParams{Req: r}); err != nil {
			t.Fatalf("pieceDigest %q: %v", tc.name, err)
		}
		if dt, err := d.dfget.Get(r.CID, id); err != nil || dt.Blake3 != tc.want {
			t.Errorf("pieceDigest %q: blake3 %v (%v), want %v", tc.name, dt.Blake3, err, tc.want)
		}
	}
	r := validReq()
	r.CID, r.PieceDigest = "c-bad", "crc32"
	_, err := d.m.Register(RegisterParams{Req: r})
	if CodeOf(err) != types.CodeParamError || !strings.Contains(err.Error(), "pieceDigest") {
		t.Fatalf("pieceDigest crc32: %v (code %d), want a 501 naming pieceDigest", err, CodeOf(err))
	}
	if _, err := d.dfget.Get("c-bad", id); err == nil {
		t.Fatal("a refused registration was recorded")
	}
}

// TestRegistrationIDMatchesClient holds the supernode to the ID a dfget
// computes before it registers, which is how a dfget finds a task's home
// supernode in a cluster.
func TestRegistrationIDMatchesClient(t *testing.T) {
	for _, req := range []types.RegisterRequest{
		{RawURL: "http://o/f?x=1", TaskURL: "http://o/f"},
		{RawURL: "http://o/f"},
		{RawURL: "http://o/f", Md5: "D41D8CD98F00B204E9800998ECF8427E", Identifier: "ignored"},
		{RawURL: "http://o/f", Identifier: "sha256:0123"},
		{RawURL: "http://o/f", Headers: []string{"range: bytes=0-99", "X-A: b"}},
		{RawURL: "https://o/f", Insecure: true},
		{RawURL: "https://o/f", RootCAs: [][]byte{[]byte("b"), []byte("a")}},
	} {
		src, err := registrationSource(req, false)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		want, err := taskid.Registration{RawURL: req.RawURL, TaskURL: req.TaskURL, Md5: req.Md5,
			Identifier: req.Identifier, Headers: req.Headers,
			Trust: taskid.Trust{Insecure: req.Insecure, RootCAs: req.RootCAs}}.ID()
		if err != nil {
			t.Fatal(err)
		}
		if src.TaskID != want {
			t.Errorf("%+v: supernode id %s, client id %s", req, src.TaskID, want)
		}
	}
}

// An expected sha256 reaches the CDN with the source, and is not part of
// the task's identity: the registration that starts the fetch sets the
// check, a later one with another digest joins the same task.
func TestRegisterDigest(t *testing.T) {
	d := newDeps(t)
	id := taskid.ID("http://o/f", "", "", map[string]string{})
	want := "sha256:" + strings.Repeat("ab", 32)
	d.prog.EXPECT().InitTask(id)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(src cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		if src.TaskID != id || src.Digest.String() != want {
			t.Errorf("source %+v, want digest %s", src, want)
		}
		return cdn.Started{HTTPFileLength: 10, PieceSize: piece.ComputeSize(10)}, nil
	}).Times(1)
	d.prog.EXPECT().InitClient(id, gomock.Any(), gomock.Any(), false, false, 0).Times(2)
	r := validReq()
	r.Digest = "SHA256:" + strings.Repeat("AB", 32)
	if res, err := d.m.Register(RegisterParams{Req: r}); err != nil || res.TaskID != id {
		t.Fatalf("register: %+v %v", res, err)
	}
	r.CID, r.Digest = "c2", "sha256:"+strings.Repeat("cd", 32)
	if res, err := d.m.Register(RegisterParams{Req: r}); err != nil || res.TaskID != id {
		t.Fatalf("second digest: %+v %v", res, err)
	}
}

// A registration whose task GC drops while it registers fails (the client
// registers again) instead of answering for a task whose progress is gone,
// and leaves no client entry: GC swept the task's clients before the
// registration added its own (the hook drops the task after the Add, as GC
// would without its sweep seeing the entry), and the entry stayed until its
// peer was collected. The new peer goes down, so the peer GC takes it.
// Either the progress was already dropped (InitClient fails) or GC had only
// detached the task (InitClient succeeds, the progress goes next). An entry
// a later registration of the client made meanwhile is not its to remove.
func TestRegisterTaskDroppedMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		progressGone, replaced bool
	}{{"progress gone", true, false}, {"detached", false, false}, {"replaced meanwhile", false, true}} {
		d := newDeps(t)
		id := taskid.ID("http://o/f", "", "", map[string]string{})
		d.prog.EXPECT().InitTask(id)
		d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).Return(cdn.Started{HTTPFileLength: 10, PieceSize: piece.ComputeSize(10)}, nil)
		var peerID string
		d.prog.EXPECT().InitClient(id, "c1", gomock.Any(), false, false, 0).DoAndReturn(
			func(_, cid, pid string, _, _ bool, _ int) error {
				if _, err := d.dfget.Get(cid, id); err != nil {
					t.Errorf("%s: no client entry before InitClient: %v", tc.name, err)
				}
				peerID = pid
				d.m.Detach(id)
				if tc.replaced {
					_ = d.dfget.Add(dfgettask.Task{CID: cid, TaskID: id, PeerID: "later", Path: "/peer/file/f-2"})
				}
				if tc.progressGone {
					return progress.ErrUnknownTask
				}
				return nil
			})
		d.prog.EXPECT().PeerDown(gomock.Any()).Do(func(pid string) {
			if pid != peerID {
				t.Errorf("%s: peer %s down, want the registration's %s", tc.name, pid, peerID)
			}
		})
		_, err := d.m.Register(RegisterParams{Req: validReq()})
		if CodeOf(err) != types.CodeSystemError || (tc.progressGone && !errors.Is(err, progress.ErrUnknownTask)) {
			t.Errorf("%s: register: %v (code %d), want a 500", tc.name, err, CodeOf(err))
		}
		dt, err := d.dfget.Get("c1", id)
		if tc.replaced && (err != nil || dt.PeerID != "later") {
			t.Errorf("%s: the later registration's entry: %+v, %v", tc.name, dt, err)
		}
		if !tc.replaced && err == nil {
			t.Errorf("%s: the client entry of the dropped task stayed: %+v", tc.name, dt)
		}
	}
}
