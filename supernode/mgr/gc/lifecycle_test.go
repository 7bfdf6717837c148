package gc

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// lifecycle is a supernode's managers, the real ones, around an origin
// whose first answer is a 500 and whose later ones wait for release, then
// send headers and a little of the body and hold the connection: a fill
// that started keeps running until it is stopped.
type lifecycle struct {
	origin  *httptest.Server
	entered chan struct{} // a request after the first reached the origin
	release chan struct{}
	cdn     *cdn.Manager
	tasks   *task.Manager
	spy     *MockTasks // the GC's view of tasks, passing every call on
	gc      *Manager
}

func newLifecycle(t *testing.T) *lifecycle {
	l := &lifecycle{entered: make(chan struct{}, 1), release: make(chan struct{})}
	var mu sync.Mutex
	calls := 0
	l.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		select {
		case l.entered <- struct{}{}:
		default:
		}
		select {
		case <-l.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", "10000000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(l.origin.Close)
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	prog := progress.New("super")
	peers := peer.New(nil, nil)
	dfgets := dfgettask.New(dfgettask.Config{SuperPID: "super"}, dfgettask.Metrics{})
	l.cdn = cdn.New(cdn.Config{SourceAllow: []string{"127.0.0.1"}}, st, prog, cdn.Metrics{}, log)
	t.Cleanup(l.cdn.Close) // before the origin closes: it ends the held requests
	l.tasks = task.New(task.Config{AdvertiseIP: "10.0.0.1"}, l.cdn, prog, peers, dfgets, task.Metrics{}, log)
	l.spy = NewMockTasks(gomock.NewController(t))
	l.spy.EXPECT().Has(gomock.Any()).DoAndReturn(l.tasks.Has).AnyTimes()
	l.spy.EXPECT().Remove(gomock.Any()).Do(l.tasks.Remove).AnyTimes()
	l.gc = New(Config{}, l.spy, dfgets, prog, peers, l.cdn, st, Metrics{}, log)
	return l
}

func (l *lifecycle) register(cid string) (types.RegisterResponseData, error) {
	return l.tasks.Register(task.RegisterParams{Req: types.RegisterRequest{
		RawURL: l.origin.URL + "/f", TaskURL: l.origin.URL + "/f", CID: cid, IP: "127.0.0.2", Port: 15001,
		Path: "/peer/file/f-" + cid, HostName: "h", SuperNodeIP: "10.0.0.1",
	}})
}

// A task GC drops while a registration restarts its failed CDN (the
// registration holds the task inside the CDN's start, waiting for the
// source): the fill that start begins is stopped with the task. None runs
// on for a task no longer listed, which task GC would never see again
// and disk GC could delete under it; and the task's ID registers afresh
// once GC is done.
func TestGCTaskDuringACDNStartLeavesNoFill(t *testing.T) {
	l := newLifecycle(t)
	if _, err := l.register("c1"); err == nil {
		t.Fatal("the origin's 500 registered")
	}
	ids := l.tasks.Expired(time.Now().Add(time.Hour))
	if len(ids) != 1 {
		t.Fatalf("tasks %v, want the failed one", ids)
	}
	id := ids[0]

	registered := make(chan error, 1)
	go func() {
		_, err := l.register("c2")
		registered <- err
	}()
	<-l.entered // the registration is inside the CDN's start
	detaching := make(chan struct{})
	l.spy.EXPECT().Detach(id).DoAndReturn(func(id string) bool {
		close(detaching)
		return l.tasks.Detach(id)
	})
	collected := make(chan struct{})
	go func() {
		l.gc.GCTask(id, false)
		close(collected)
	}()
	<-detaching
	close(l.release) // the source answers: the start returns, a fill begins
	<-registered     // either outcome: GC may drop the task before or after
	<-collected

	if l.tasks.Has(id) {
		t.Fatalf("task %s kept by GC", id)
	}
	if l.cdn.Running(id) {
		t.Fatalf("a fill runs for task %s, which is not in the task map", id)
	}
	// Nothing of the dropped task is in the way of the next registration.
	if _, err := l.register("c3"); err != nil {
		t.Fatalf("register after GC: %v", err)
	}
	if !l.tasks.Has(id) || !l.cdn.Running(id) {
		t.Fatalf("after a new registration: task listed %v, fill running %v", l.tasks.Has(id), l.cdn.Running(id))
	}
}

// A peer deleted by GC and marked down after by a probe that overlapped
// the deletion is gone for good after the next peer GC: no progress state
// of it is left, which the peer GC (walking peer records) would never
// visit again.
func TestPeerDownAfterDeletionLeavesNoState(t *testing.T) {
	x := newMocks(t)
	prog := progress.New("super")
	peers := peer.New(nil, nil)
	dfgets := dfgettask.New(dfgettask.Config{SuperPID: "super"}, dfgettask.Metrics{})
	x.m = New(Config{PeerGCDelay: time.Minute}, x.tasks, dfgets, prog, peers, x.cdn, x.store, Metrics{}, x.m.log)
	pid, err := peers.Register(types.PeerCreateRequest{IP: "127.0.0.2", HostName: "h", Port: 15001})
	if err != nil {
		t.Fatal(err)
	}
	prog.InitTask("t1")
	if err := prog.InitClient("t1", "c1", pid, false, false, 0); err != nil {
		t.Fatal(err)
	}
	if err := x.m.DeletePeer(pid); err != nil {
		t.Fatal(err)
	}
	prog.PeerDown(pid) // the probe of the deleted peer
	x.m.gcPeers()
	if prog.HasPeer(pid) {
		t.Fatalf("peer %s has progress state after its deletion and a peer GC", pid)
	}
}
