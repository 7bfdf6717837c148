package pieceerror

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
)

const ps = 16 // the tests' piece size

type fixture struct {
	m       *Manager
	clients *MockClients
	gc      *MockGC
	dir     string
	spans   []cdn.Span
}

// newFixture writes task "good"'s cache of two pieces, the second short,
// and serves its spans from a mock CDN; "c" and "d" are clients of every
// task.
func newFixture(t *testing.T, cfg Config) *fixture {
	ctrl := gomock.NewController(t)
	f := &fixture{clients: NewMockClients(ctrl), gc: NewMockGC(ctrl), dir: t.TempDir()}
	p0 := piece.Wrap(nil, []byte("eleven byte"), ps)
	p1 := piece.Wrap(nil, []byte("tail"), ps)
	if err := os.WriteFile(filepath.Join(f.dir, "good"), append(append([]byte(nil), p0...), p1...), 0o644); err != nil {
		t.Fatal(err)
	}
	f.spans = []cdn.Span{
		{Num: 0, Offset: 0, Length: int64(len(p0)), PieceSize: ps, Digest: digest.Sum(digest.BLAKE3, p0)},
		{Num: 1, Offset: ps, Length: int64(len(p1)), PieceSize: ps, Digest: digest.Sum(digest.BLAKE3, p1)},
	}
	c := NewMockCDN(ctrl)
	c.EXPECT().PieceAt(gomock.Any(), gomock.Any()).DoAndReturn(func(id string, off int64) (cdn.Span, bool) {
		if id == "good" && off%ps == 0 && off/ps < int64(len(f.spans)) {
			return f.spans[off/ps], true
		}
		return cdn.Span{}, false
	}).AnyTimes()
	f.clients.EXPECT().Caller(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(cid, _ string, _ netip.Addr) (dfgettask.Task, error) {
		if cid == "c" || cid == "d" {
			return dfgettask.Task{CID: cid}, nil
		}
		return dfgettask.Task{}, dfgettask.ErrNotFound
	}).AnyTimes()
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg.SuperPID = "super"
	f.m = New(cfg, f.clients, c, f.gc, func(id string) string { return filepath.Join(f.dir, id) }, log)
	return f
}

func md5Error(rng string) types.PieceErrorRequest {
	return types.PieceErrorRequest{TaskID: "good", SrcCid: "c", DstPid: "super", ErrorType: types.PieceErrorFileMd5NotMatch, Range: rng}
}

func TestReportChecksTheReporter(t *testing.T) {
	f := newFixture(t, Config{})
	// Reports about other peers are ignored.
	if err := f.m.Report(types.PieceErrorRequest{TaskID: "good", SrcCid: "x", DstPid: "peer", ErrorType: types.PieceErrorFileNotExist}, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Report(types.PieceErrorRequest{TaskID: "good", SrcCid: "c", DstPid: "super", ErrorType: "WHAT"}, netip.Addr{}); err == nil {
		t.Fatal("unknown type accepted")
	}
	// Anyone but a client of the task is refused, and holds nothing back.
	for _, src := range []string{"", "stranger"} {
		err := f.m.Report(types.PieceErrorRequest{TaskID: "gone", SrcCid: src, DstPid: "super", ErrorType: types.PieceErrorFileNotExist}, netip.Addr{})
		if !errors.Is(err, ErrUnknownClient) {
			t.Fatalf("report from %q: %v, want %v", src, err, ErrUnknownClient)
		}
	}
	if n := len(f.m.queue); n != 0 {
		t.Fatalf("%d reports queued from strangers", n)
	}
	if err := f.m.Report(types.PieceErrorRequest{TaskID: "gone", SrcCid: "c", DstPid: "super", ErrorType: types.PieceErrorFileNotExist}, netip.Addr{}); err != nil || len(f.m.queue) != 1 {
		t.Fatalf("a client's report: %v, %d queued", err, len(f.m.queue))
	}
}

func TestHandleFileNotExist(t *testing.T) {
	f := newFixture(t, Config{})
	// A file that exists is not dropped; a missing one is.
	f.m.Handle(types.PieceErrorRequest{TaskID: "good", SrcCid: "c", DstPid: "super", ErrorType: types.PieceErrorFileNotExist})
	f.gc.EXPECT().GCTask("gone", true)
	f.m.Handle(types.PieceErrorRequest{TaskID: "gone", SrcCid: "c", DstPid: "super", ErrorType: types.PieceErrorFileNotExist})

	// In the source pattern the supernode has no file: nothing is dropped.
	f = newFixture(t, Config{SourcePattern: true})
	f.m.Handle(types.PieceErrorRequest{TaskID: "gone", SrcCid: "c", DstPid: "super", ErrorType: types.PieceErrorFileNotExist})
}

// Only the piece a report names is checked, at its own offset and length:
// a range that is not the piece's (one byte, the whole file and beyond, a
// neighbour's bytes) is refused without reading, so it cannot fail an
// intact piece nor make the supernode read a client-chosen amount.
func TestHandleMd5ChecksExactlyThePiece(t *testing.T) {
	f := newFixture(t, Config{})
	for _, rng := range []string{"0-0", "0-999999999999", "0-24", "8-15", "16-16", "16-40", "32-47", "bad"} {
		f.m.Handle(md5Error(rng))
	}
	// Intact pieces, with their own range or a whole piece's (offered so
	// while the length was unknown), are kept.
	for _, rng := range []string{"0-15", "16-24", "16-31"} {
		f.m.Handle(md5Error(rng))
	}
	// A damaged piece is dropped; its intact neighbour is not blamed.
	path := filepath.Join(f.dir, "good")
	b, _ := os.ReadFile(path)
	b[20] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f.m.Handle(md5Error("0-15"))
	f.gc.EXPECT().GCTask("good", true)
	f.m.Handle(md5Error("16-24"))
	// A short cache file is damaged too.
	if err := os.WriteFile(path, b[:20], 0o644); err != nil {
		t.Fatal(err)
	}
	f.gc.EXPECT().GCTask("good", true)
	f.m.Handle(md5Error("16-31"))
}

// In the source pattern a mismatch of a piece's exact range drops the task
// (its digests are read from the source again); a forged range does not.
func TestHandleMd5SourcePattern(t *testing.T) {
	f := newFixture(t, Config{SourcePattern: true})
	f.m.Handle(md5Error("0-0"))
	f.gc.EXPECT().GCTask("good", true)
	f.m.Handle(md5Error("0-15"))
}

func TestRunHandlesQueueAndDropsDuplicates(t *testing.T) {
	f := newFixture(t, Config{})
	handled := make(chan struct{}, 3)
	f.gc.EXPECT().GCTask("q", true).Do(func(string, bool) { handled <- struct{}{} }).Times(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.m.Run(ctx); close(done) }()
	for range 3 {
		if err := f.m.Report(types.PieceErrorRequest{TaskID: "q", SrcCid: "c", DstPid: "super", ErrorType: types.PieceErrorFileNotExist}, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("queued report not handled in 10s")
	}
	cancel()
	<-done
}

// The CDN's own damage report takes a client report's path without being
// a client: queued, the range checked against the file, the task dropped
// only if the piece is damaged.
func TestCacheDamaged(t *testing.T) {
	f := newFixture(t, Config{})
	f.m.hold = 0 // no duplicate hold between the two reports
	handleQueued := func() {
		t.Helper()
		select {
		case req := <-f.m.queue:
			f.m.Handle(req)
		default:
			t.Fatal("the CDN's report was not queued")
		}
	}
	f.m.CacheDamaged("good", "0-15")
	handleQueued() // intact: the mock fails on any GCTask
	path := filepath.Join(f.dir, "good")
	b, _ := os.ReadFile(path)
	b[3] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f.m.CacheDamaged("good", "0-15")
	f.gc.EXPECT().GCTask("good", true)
	handleQueued()
}

// The duplicate hold is per report and per client: a client's bogus report
// about one piece holds back neither another client's report about
// another piece nor the CDN's own; the same report again, however its
// range is spelled, is dropped; and one client gets one report per task
// queued per hold, so it cannot fill the queue. A report the full queue
// refused holds nothing back.
func TestHoldIsPerReportAndClient(t *testing.T) {
	f := newFixture(t, Config{})
	from := func(cid, rng string) types.PieceErrorRequest { r := md5Error(rng); r.SrcCid = cid; return r }
	for _, req := range []types.PieceErrorRequest{
		from("c", "0-0"),   // queued
		from("c", "16-24"), // c's hold
		from("d", "16-24"), // queued
		from("d", "16-24"), // the same report, and d's hold
		from("c", "016-24"),
	} {
		if err := f.m.Report(req, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	f.m.CacheDamaged("good", "0-15")
	f.m.CacheDamaged("good", "00-15") // the same report
	var got []string
	for len(f.m.queue) > 0 {
		r := <-f.m.queue
		got = append(got, r.SrcCid+":"+r.Range)
	}
	if want := []string{"c:0-0", "d:16-24", ":0-15"}; !slices.Equal(got, want) {
		t.Fatalf("queued reports %q, want %q", got, want)
	}

	f = newFixture(t, Config{})
	for range cap(f.m.queue) {
		f.m.queue <- types.PieceErrorRequest{}
	}
	if err := f.m.Report(from("c", "0-15"), netip.Addr{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("report to a full queue: %v, want %v", err, ErrBusy)
	}
	<-f.m.queue
	if err := f.m.Report(from("c", "0-15"), netip.Addr{}); err != nil || len(f.m.queue) != cap(f.m.queue) {
		t.Fatalf("the refused report held back its retry: %v, %d queued", err, len(f.m.queue))
	}
}
