package task

import (
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

// How a registration trusts its source's TLS splits tasks: a client that
// verifies never joins a task fetched with insecure=true or with another
// client's root CAs (one client's setting used to decide the bytes every
// client of the URL got). Registrations of the same trust share a task,
// whatever order the CAs come in, and a default one keeps v1's task ID.
func TestRegisterTrustSplitsTasks(t *testing.T) {
	d := newDeps(t)
	started := map[string]cdn.Source{}
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(s cdn.Source, _ func(cdn.Result)) (cdn.Started, error) {
		if _, dup := started[s.TaskID]; dup {
			t.Errorf("cdn of task %s started twice", s.TaskID)
		}
		started[s.TaskID] = s
		return cdn.Started{HTTPFileLength: 10, PieceSize: 4 << 20}, nil
	}).AnyTimes()
	d.prog.EXPECT().InitTask(gomock.Any()).AnyTimes()
	d.prog.EXPECT().InitClient(gomock.Any(), gomock.Any(), gomock.Any(), gomock.Any(), gomock.Any(), gomock.Any()).AnyTimes()
	caA, caB := []byte("-----BEGIN CERTIFICATE-----\nA\n"), []byte("-----BEGIN CERTIFICATE-----\nB\n")
	register := func(cid string, insecure bool, cas ...[]byte) string {
		t.Helper()
		req := validReq()
		req.RawURL, req.TaskURL, req.CID, req.Insecure, req.RootCAs = "https://o/f", "", cid, insecure, cas
		r, err := d.m.Register(RegisterParams{Req: req})
		if err != nil {
			t.Fatalf("%s: %v", cid, err)
		}
		return r.TaskID
	}
	insecure, verified, ownCAs := register("c1", true), register("c2", false), register("c3", false, caA, caB)
	if verified != taskid.ID("https://o/f", "", "", nil) {
		t.Errorf("default trust: task %s, not v1's ID", verified)
	}
	if insecure == verified || ownCAs == verified || ownCAs == insecure {
		t.Fatalf("trusts share a task: insecure %s, verified %s, own CAs %s", insecure, verified, ownCAs)
	}
	if got := register("c4", false, caB, caA); got != ownCAs {
		t.Errorf("the same CAs in another order: task %s, want %s", got, ownCAs)
	}
	if got := register("c5", false, caA); got == ownCAs || got == verified {
		t.Errorf("another set of CAs joins task %s", got)
	}
	if s := started[verified]; s.Insecure || len(s.RootCAs) != 0 {
		t.Errorf("the verified task's cdn fetches with insecure=%v, %d CAs", s.Insecure, len(s.RootCAs))
	}
	if !started[insecure].Insecure {
		t.Error("the insecure task's cdn verifies")
	}
}

// A task ID is only a hash: a source of another trust that reached an
// existing task's ID would still be refused rather than join it.
func TestEnsureRefusesAnotherTrust(t *testing.T) {
	d := newDeps(t)
	d.cdn.EXPECT().Start(gomock.Any(), gomock.Any()).Return(cdn.Started{HTTPFileLength: 10, PieceSize: 4 << 20}, nil)
	d.prog.EXPECT().InitTask(gomock.Any())
	src := cdn.Source{TaskID: "t", RawURL: "https://o/f", TaskURL: "https://o/f", Insecure: true}
	if _, err := d.m.ensure(src, false, false); err != nil {
		t.Fatal(err)
	}
	src.Insecure = false
	if _, err := d.m.ensure(src, false, false); err == nil {
		t.Error("a verifying source joined the insecure task")
	}
}
