package gc

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/fileio"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/store"
	"github.com/damselfly-p2p/damselfly/test/disktest"
)

type mocks struct {
	tasks *MockTasks
	dfget *MockDfgetTasks
	prog  *MockProgress
	peers *MockPeers
	cdn   *MockCDN
	store *MockStore
	m     *Manager
}

func newMocks(t *testing.T) *mocks {
	ctrl := gomock.NewController(t)
	x := &mocks{tasks: NewMockTasks(ctrl), dfget: NewMockDfgetTasks(ctrl), prog: NewMockProgress(ctrl),
		peers: NewMockPeers(ctrl), cdn: NewMockCDN(ctrl), store: NewMockStore(ctrl)}
	log := logrus.New()
	log.SetOutput(io.Discard)
	x.m = New(Config{TaskExpire: time.Minute, PeerGCDelay: time.Minute, YoungGCThreshold: 100, FullGCThreshold: 10, YoungMinIdle: time.Hour},
		x.tasks, x.dfget, x.prog, x.peers, x.cdn, x.store, Metrics{}, log)
	return x
}

func TestGCMetaExpiresTasksAndPeers(t *testing.T) {
	x := newMocks(t)
	now := time.Now()
	x.m.now = func() time.Time { return now }
	x.tasks.EXPECT().Expired(now.Add(-time.Minute)).Return([]string{"t1"})
	x.dfget.EXPECT().ByTask("t1").Return([]dfgettask.Task{{CID: "c1", TaskID: "t1", PeerID: "p1"}})
	gomock.InOrder(
		x.tasks.EXPECT().Detach("t1").Return(true),
		x.prog.EXPECT().PeerDown("p1"),
		x.prog.EXPECT().DeleteClient("t1", "c1"),
		x.dfget.EXPECT().Delete("c1", "t1"),
		x.cdn.EXPECT().Delete("t1", false).Return(nil),
		x.prog.EXPECT().DeleteTask("t1"),
		x.tasks.EXPECT().Remove("t1"),
	)
	// Peers: super kept, p1 down long ago goes, p2 down just now stays,
	// p3 up stays, p4 without progress goes, and p5's progress goes: it
	// has no record (state made after its record was deleted).
	x.prog.EXPECT().SuperPID().Return("super")
	gomock.InOrder(
		x.prog.EXPECT().PeerIDs().Return([]string{"super", "p1", "p2", "p3", "p5"}),
		x.peers.EXPECT().IDs().Return([]string{"super", "p1", "p2", "p3", "p4"}),
	)
	x.prog.EXPECT().DeletePeer("p5")
	x.prog.EXPECT().DownSince("p1").Return(now.Add(-2 * time.Minute))
	x.prog.EXPECT().HasPeer("p1").Return(true)
	x.prog.EXPECT().DownSince("p2").Return(now.Add(-time.Second))
	x.prog.EXPECT().HasPeer("p2").Return(true)
	x.prog.EXPECT().DownSince("p3").Return(time.Time{})
	x.prog.EXPECT().HasPeer("p3").Return(true)
	x.prog.EXPECT().DownSince("p4").Return(time.Time{})
	x.prog.EXPECT().HasPeer("p4").Return(false)
	// p1's client of another task goes with it, as that task's client.
	x.dfget.EXPECT().ByPeer("p1").Return([]dfgettask.Task{{CID: "c2", TaskID: "t2", PeerID: "p1"}})
	x.prog.EXPECT().DeleteClient("t2", "c2")
	x.dfget.EXPECT().Delete("c2", "t2")
	x.dfget.EXPECT().ByPeer("p4").Return(nil)
	for _, p := range []string{"p1", "p4"} {
		x.prog.EXPECT().DeletePeer(p)
		x.peers.EXPECT().Delete(p).Return(nil)
	}
	x.m.GCMeta()
}

func TestGCDiskLRU(t *testing.T) {
	x := newMocks(t)
	x.m.now = func() time.Time { return time.UnixMilli(1000).Add(2 * time.Hour) }
	// 50 bytes free, young threshold 100: remove least recently used
	// cache files not in memory until 100 are free.
	x.store.EXPECT().AvailSpace().Return(int64(50), nil)
	x.store.EXPECT().TaskIDs().Return([]string{"new", "old", "mid", "live"}, nil)
	x.tasks.EXPECT().Has("live").Return(true)
	for id, at := range map[string]int64{"new": 300, "old": 100, "mid": 200} {
		x.tasks.EXPECT().Has(id).Return(false).AnyTimes()
		x.store.EXPECT().ReadMeta(id).Return(&store.Meta{TaskID: id, AccessTime: at}, nil)
		x.store.EXPECT().DataUsage(id).Return(int64(30))
	}
	gomock.InOrder(
		x.store.EXPECT().Remove("old").Return(nil),
		x.store.EXPECT().Remove("mid").Return(nil),
	)
	x.m.GCDisk()

	// Enough space: nothing happens.
	x.store.EXPECT().AvailSpace().Return(int64(1000), nil)
	x.m.GCDisk()

	// Young GC keeps recently used files even if space stays low.
	x.store.EXPECT().AvailSpace().Return(int64(50), nil)
	x.store.EXPECT().TaskIDs().Return([]string{"fresh"}, nil)
	x.tasks.EXPECT().Has("fresh").Return(false)
	x.store.EXPECT().ReadMeta("fresh").Return(&store.Meta{TaskID: "fresh", AccessTime: x.m.now().UnixMilli()}, nil)
	x.store.EXPECT().DataUsage("fresh").Return(int64(30))
	x.m.GCDisk()

	// Below the full threshold: recent files go too, oldest first, until
	// free space is back above the young threshold.
	x.store.EXPECT().AvailSpace().Return(int64(5), nil)
	x.store.EXPECT().TaskIDs().Return([]string{"a", "b", "c"}, nil)
	for _, id := range []string{"a", "b", "c"} {
		x.tasks.EXPECT().Has(id).Return(false).AnyTimes()
		x.store.EXPECT().ReadMeta(id).Return(&store.Meta{TaskID: id, AccessTime: x.m.now().UnixMilli() + int64(id[0])}, nil)
		x.store.EXPECT().DataUsage(id).Return(int64(60))
	}
	gomock.InOrder(x.store.EXPECT().Remove("a").Return(nil), x.store.EXPECT().Remove("b").Return(nil))
	x.m.GCDisk()
}

// A task dropped while its CDN runs: it is detached first (no fetch
// starts for it after), then the fetch is stopped (cdn.Delete waits for
// it, and its last events reach the progress store) before the task's
// progress is deleted, so no event arrives for a deleted task.
func TestGCTaskStopsCDNBeforeProgress(t *testing.T) {
	x := newMocks(t)
	x.dfget.EXPECT().ByTask("t1").Return(nil)
	gomock.InOrder(
		x.tasks.EXPECT().Detach("t1").Return(true),
		x.cdn.EXPECT().Delete("t1", true).Return(nil),
		x.prog.EXPECT().DeleteTask("t1"),
		x.tasks.EXPECT().Remove("t1"),
	)
	x.m.GCTask("t1", true)
}

// A cache file is counted by the blocks it holds, not by its length: a
// fill's reservation past its written length (here all of it) frees its
// blocks too, so removing it is enough, and a newer cache stays.
func TestGCDiskCountsAllocatedBlocks(t *testing.T) {
	st, err := store.New(disktest.Ext4(t, 64))
	if err != nil {
		t.Fatal(err)
	}
	const reserved = 30 << 20
	cacheFile(t, st, "reserved", 100, func(f *os.File) error { return fileio.Reserve(f, reserved, true) })
	cacheFile(t, st, "other", 200, func(f *os.File) error {
		_, err := f.Write(make([]byte, 8<<20))
		return err
	})
	avail, err := st.AvailSpace()
	if err != nil {
		t.Fatal(err)
	}
	x := newMocks(t)
	x.tasks.EXPECT().Has(gomock.Any()).Return(false).AnyTimes()
	log := logrus.New()
	log.SetOutput(io.Discard)
	x.m = New(Config{YoungGCThreshold: avail + reserved*2/3, YoungMinIdle: time.Hour},
		x.tasks, x.dfget, x.prog, x.peers, x.cdn, st, Metrics{}, log)
	x.m.GCDisk()
	if _, err := st.ReadMeta("reserved"); err == nil {
		t.Error("the cache holding the reservation was kept")
	}
	if _, err := st.ReadMeta("other"); err != nil {
		t.Errorf("removing the reservation freed enough, yet the other cache went too: %v", err)
	}
}

// cacheFile stores a task's meta, accessed at access (Unix ms), and a data
// file that fill writes.
func cacheFile(t *testing.T, st *store.Store, id string, access int64, fill func(*os.File) error) {
	t.Helper()
	if err := st.WriteMeta(&store.Meta{TaskID: id, AccessTime: access}); err != nil {
		t.Fatal(err)
	}
	f, err := st.OpenData(id, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := fill(f); err != nil {
		t.Fatal(err)
	}
}
