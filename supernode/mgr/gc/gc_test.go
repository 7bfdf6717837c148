package gc

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	x.store.EXPECT().DiskSize().Return(int64(1000), nil).AnyTimes()
	// 50 bytes free, young threshold 100: remove least recently used
	// cache files not in memory until 100 are free, reading free space
	// again after each.
	x.store.EXPECT().TaskIDs().Return([]string{"new", "old", "mid", "live"}, nil)
	x.tasks.EXPECT().Has("live").Return(true)
	for id, at := range map[string]int64{"new": 300, "old": 100, "mid": 200} {
		x.tasks.EXPECT().Has(id).Return(false).AnyTimes()
		x.tasks.EXPECT().IfAbsent(id, gomock.Any()).DoAndReturn(runAbsent).AnyTimes()
		x.store.EXPECT().ReadMeta(id).Return(&store.Meta{TaskID: id, AccessTime: at}, nil)
	}
	gomock.InOrder(
		x.store.EXPECT().AvailSpace().Return(int64(50), nil),
		x.store.EXPECT().Remove("old").Return(nil),
		x.store.EXPECT().AvailSpace().Return(int64(80), nil),
		x.store.EXPECT().Remove("mid").Return(nil),
		x.store.EXPECT().AvailSpace().Return(int64(110), nil),
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
	x.m.GCDisk()

	// Below the full threshold: recent files go too, oldest first, while
	// free space stays at or below it; above it a young GC's rule holds.
	x.store.EXPECT().TaskIDs().Return([]string{"a", "b", "c", "d"}, nil)
	for _, id := range []string{"a", "b", "c", "d"} {
		x.tasks.EXPECT().Has(id).Return(false).AnyTimes()
		x.tasks.EXPECT().IfAbsent(id, gomock.Any()).DoAndReturn(runAbsent).AnyTimes()
		x.store.EXPECT().ReadMeta(id).Return(&store.Meta{TaskID: id, AccessTime: x.m.now().UnixMilli() + int64(id[0])}, nil)
	}
	gomock.InOrder(
		x.store.EXPECT().AvailSpace().Return(int64(5), nil),
		x.store.EXPECT().Remove("a").Return(nil),
		// A file a transfer holds open frees nothing yet.
		x.store.EXPECT().AvailSpace().Return(int64(5), nil),
		x.store.EXPECT().Remove("b").Return(nil),
		x.store.EXPECT().AvailSpace().Return(int64(60), nil),
	)
	x.m.GCDisk()
}

// runAbsent is Tasks.IfAbsent of a task not in memory.
func runAbsent(_ string, fn func()) bool {
	fn()
	return true
}

// On a small file system the thresholds are a share of its size: with 3 GB
// free of 4 GB, under the configured 20 GB and 5 GB, nothing goes, not
// even a file idle for a minute (a full GC removed it).
func TestGCDiskThresholdsCappedToDiskSize(t *testing.T) {
	x := newMocks(t)
	x.m.cfg.YoungGCThreshold, x.m.cfg.FullGCThreshold = 20<<30, 5<<30
	x.m.now = func() time.Time { return time.UnixMilli(0).Add(24 * time.Hour) }
	x.store.EXPECT().DiskSize().Return(int64(4<<30), nil).AnyTimes()
	x.store.EXPECT().AvailSpace().Return(int64(3<<30), nil).AnyTimes()
	x.store.EXPECT().TaskIDs().Return([]string{"idle"}, nil).AnyTimes()
	x.tasks.EXPECT().Has("idle").Return(false).AnyTimes()
	x.tasks.EXPECT().IfAbsent("idle", gomock.Any()).DoAndReturn(runAbsent).AnyTimes()
	x.store.EXPECT().ReadMeta("idle").Return(&store.Meta{TaskID: "idle", AccessTime: x.m.now().Add(-time.Minute).UnixMilli()}, nil).AnyTimes()
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "last"})
	x.m.metrics.LastDisk = last
	x.m.GCDisk()
	// A pass that had nothing to do still counts as one.
	var got dto.Metric
	if err := last.Write(&got); err != nil || got.GetGauge().GetValue() != float64(x.m.now().Unix()) {
		t.Errorf("last disk GC %v %v, want %v", got.GetGauge().GetValue(), err, x.m.now().Unix())
	}
	young, full, err := x.m.Thresholds()
	if err != nil || young != (4<<30)/100*20 || full != (4<<30)/100*5 {
		t.Fatalf("thresholds %d %d %v", young, full, err)
	}
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

// Free space is read again after a removal, so a fill's reservation past
// its written length (here all of it) counts as freed: removing that file
// is enough, and a newer cache stays.
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
	// Thresholds are capped to a share of the disk: fill it to 10% free.
	size, err := st.DiskSize()
	if err != nil {
		t.Fatal(err)
	}
	avail, err := st.AvailSpace()
	if err != nil {
		t.Fatal(err)
	}
	filler, err := os.Create(filepath.Join(st.Root(), "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	if err := fileio.Reserve(filler, avail-size/10, true); err != nil {
		t.Fatal(err)
	}
	if avail, err = st.AvailSpace(); err != nil {
		t.Fatal(err)
	}
	x := newMocks(t)
	x.tasks.EXPECT().IfAbsent(gomock.Any(), gomock.Any()).DoAndReturn(runAbsent).AnyTimes()
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
