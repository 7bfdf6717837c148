package gc

// The task manager's CDN and progress, for a real task manager beside the
// disk GC (names apart from the GC's own mocks).
//go:generate go tool mockgen -source=../task/task.go -destination=mock_task_test.go -package=gc -exclude_interfaces=Peers,DfgetTasks,Home -mock_names=CDN=MockTaskCDN,Progress=MockTaskProgress

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// A registration while disk GC removes a task's cache files waits for the
// removal: its CDN, which opens or reuses those files, never starts on
// files being removed, and the task is registered afterwards.
func TestGCDiskHoldsOffRegistrationDuringRemove(t *testing.T) {
	ctrl := gomock.NewController(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	var removing, startedDuringRemove atomic.Bool
	cdnMock := NewMockTaskCDN(ctrl)
	cdnMock.EXPECT().Start(gomock.Any(), gomock.Any()).DoAndReturn(func(cdn.Source, func(cdn.Result)) (cdn.Started, error) {
		if removing.Load() {
			startedDuringRemove.Store(true)
		}
		return cdn.Started{HTTPFileLength: 10, PieceSize: 4 << 20}, nil
	}).AnyTimes()
	taskProg := NewMockTaskProgress(ctrl)
	taskProg.EXPECT().InitTask(gomock.Any()).AnyTimes()
	// The registries are not used by Ensure.
	tasks := task.New(task.Config{AdvertiseIP: "127.0.0.1"}, cdnMock, taskProg, nil, nil, task.Metrics{}, log)
	src := cdn.Source{RawURL: "http://origin.example/f"}
	id, err := tasks.Ensure(src)
	if err != nil {
		t.Fatal(err)
	}
	tasks.Remove(id) // expired: its files stay on disk, a GC candidate

	x := newMocks(t)
	m := New(Config{YoungGCThreshold: 100, FullGCThreshold: 10, YoungMinIdle: time.Hour},
		tasks, x.dfget, x.prog, x.peers, x.cdn, x.store, Metrics{}, log)
	x.store.EXPECT().DiskSize().Return(int64(1000), nil).AnyTimes()
	x.store.EXPECT().TaskIDs().Return([]string{id}, nil)
	x.store.EXPECT().ReadMeta(id).Return(&store.Meta{TaskID: id}, nil)
	registered := make(chan error, 1)
	gomock.InOrder(
		x.store.EXPECT().AvailSpace().Return(int64(50), nil),
		x.store.EXPECT().Remove(id).DoAndReturn(func(string) error {
			removing.Store(true)
			defer removing.Store(false)
			go func() {
				_, err := tasks.Ensure(src)
				registered <- err
			}()
			// A registration that is not held off ends well within this.
			select {
			case err := <-registered:
				registered <- err
			case <-time.After(500 * time.Millisecond):
			}
			return nil
		}),
		x.store.EXPECT().AvailSpace().Return(int64(200), nil),
	)
	m.GCDisk()
	if err := <-registered; err != nil {
		t.Fatal(err)
	}
	if startedDuringRemove.Load() {
		t.Error("a registration started the CDN on cache files being removed")
	}
	if !tasks.Has(id) {
		t.Error("the registration was lost")
	}
}
