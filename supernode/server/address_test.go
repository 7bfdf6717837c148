package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/pull"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// refusedCount scrapes the count of calls refused for their address.
func (f *fixture) refusedCount(t *testing.T) string {
	t.Helper()
	_, text := f.do(t, "GET", "/metrics", "", "")
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "dragonfly_supernode_client_address_refused_total "); ok {
			return v
		}
	}
	t.Fatal("no dragonfly_supernode_client_address_refused_total in /metrics")
	return ""
}

// refusals are the log lines about calls refused for their address.
func (f *fixture) refusals() []string {
	var out []string
	for _, e := range f.logs.AllEntries() {
		if strings.Contains(e.Message, " refused: it registered from ") {
			out = append(out, e.Message)
		}
	}
	return out
}

// Client c is registered from 198.18.0.1 and the fixture calls from
// loopback: the managers (mocks answering with the real registry's
// Caller) refuse. Every route that acts as a client passes the call's
// address, answers exactly as for an unknown client ("nobody"), and the
// refusal, and only it, leaves one warning naming both addresses and one
// count in client_address_refused_total.
func TestForeignCallerAnsweredAsUnknown(t *testing.T) {
	f := newFixture(t)
	registry := dfgettask.New(dfgettask.Config{}, dfgettask.Metrics{})
	if err := registry.Add(dfgettask.Task{CID: "c", TaskID: "t", PeerID: "p", Path: "/peer/file/c",
		Addr: netip.MustParseAddr("198.18.0.1")}); err != nil {
		t.Fatal(err)
	}
	caller := func(cid string, from netip.Addr) error {
		_, err := registry.Caller(cid, "t", from)
		return err
	}
	notFound := func(cid string, from netip.Addr) error {
		if err := caller(cid, from); err != nil {
			return &task.Error{Code: types.CodeTargetNotFound, Err: err}
		}
		return nil
	}
	f.pulls.EXPECT().Pull(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, q pull.Query) (pull.Result, error) {
		return pull.Result{}, notFound(q.SrcCID, q.From)
	}).AnyTimes()
	f.tasks.EXPECT().PieceSuccess(gomock.Any()).DoAndReturn(func(r task.PieceReport) error { return notFound(r.CID, r.From) }).AnyTimes()
	f.tasks.EXPECT().StreamPiece(gomock.Any(), gomock.Any()).DoAndReturn(func(r task.PieceReport, _ bool) error {
		return notFound(r.CID, r.From)
	}).AnyTimes()
	f.tasks.EXPECT().ServiceDown("t", gomock.Any(), gomock.Any()).DoAndReturn(func(_, cid string, from netip.Addr) error {
		return notFound(cid, from)
	}).AnyTimes()
	f.tasks.EXPECT().DstPeer("t", "d").Return("super").AnyTimes()
	f.pe.EXPECT().Report(gomock.Any(), gomock.Any()).DoAndReturn(func(req types.PieceErrorRequest, from netip.Addr) error {
		if err := caller(req.SrcCid, from); err != nil {
			return fmt.Errorf("not a client of the task: %w", err)
		}
		return nil
	}).AnyTimes()

	for _, rt := range []struct{ method, path, body string }{
		{"GET", "/peer/task?taskId=t&srcCid=%s&status=700", ""},
		{"GET", "/peer/piece/suc?taskId=t&cid=%s&dstCid=d&pieceRange=0-9", ""},
		{"POST", "/peer/piece/stream?taskId=t&cid=%s&pieceRange=0-9", ""},
		{"DELETE", "/peer/piece/stream?taskId=t&cid=%s&pieceRange=0-9", ""},
		{"GET", "/peer/service/down?taskId=t&cid=%s", ""},
		{"GET", "/peer/piece/error?taskId=t&srcCid=%s&dstCid=d&errorType=FILE_NOT_EXIST", ""},
		{"GET", "/api/v1/tasks/t/pieces/0-9/error", `{"srcCid":"%s","dstPid":"super","errorType":"FILE_NOT_EXIST"}`},
	} {
		call := func(cid string) (int, string) {
			path, body := rt.path, rt.body
			if body == "" {
				path = fmt.Sprintf(path, cid)
			} else {
				body = fmt.Sprintf(body, cid)
			}
			return f.do(t, rt.method, path, "", body)
		}
		count, lines := f.refusedCount(t), len(f.refusals())
		st, body := call("c")
		if got := f.refusals(); len(got) != lines+1 || !strings.Contains(got[lines], "from 127.0.0.1 ") ||
			!strings.HasSuffix(got[lines], "registered from 198.18.0.1") || f.refusedCount(t) == count {
			t.Errorf("%s %s: refusals %q, count %s (was %s)", rt.method, rt.path, got[lines:], f.refusedCount(t), count)
		}
		count, lines = f.refusedCount(t), len(f.refusals())
		unknownSt, unknown := call("nobody")
		if st != unknownSt || strings.Replace(body, "client c ", "client nobody ", 1) != unknown {
			t.Errorf("%s %s: HTTP %d %q, want an unknown client's HTTP %d %q", rt.method, rt.path, st, body, unknownSt, unknown)
		}
		if len(f.refusals()) != lines || f.refusedCount(t) != count {
			t.Errorf("%s %s: an unknown client was counted as refused", rt.method, rt.path)
		}
	}

	// A registration of c's CID from here is refused the same way.
	f.tasks.EXPECT().Register(gomock.Any()).DoAndReturn(func(p task.RegisterParams) (types.RegisterResponseData, error) {
		var fe *dfgettask.ForeignError
		if err := caller(p.Req.CID, dfgettask.ParseAddr(p.RemoteIP)); errors.As(err, &fe) {
			return types.RegisterResponseData{}, &task.Error{Code: types.CodeSystemError, Err: fe}
		}
		return types.RegisterResponseData{}, errors.New("not expected")
	})
	lines := len(f.refusals())
	st, body := f.do(t, "POST", "/peer/registry", "application/json", `{"rawUrl":"http://o/f","cid":"c","path":"/peer/file/c"}`)
	if st != 500 || body != `{"code":500,"message":"client c of task t is registered from another address"}` ||
		len(f.refusals()) != lines+1 {
		t.Fatalf("registration from another address: HTTP %d %s, refusals %q", st, body, f.refusals()[lines:])
	}
}
