package cdn

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"go.uber.org/mock/gomock"
)

// A fetch started for a task whose previous fetch still runs (the task was
// dropped and registered again) starts only once that one has exited: it
// reads the cache, and resets the task's progress, after the old fetch's
// last write and last event, so no event of the old fetch lands on the
// new one and two fetches never write one file.
func TestStartWaitsForThePreviousFetch(t *testing.T) {
	o := newOriginT(t, blake3Data())
	o.mu.Lock()
	o.stallAt = 100 // not a whole piece: the first fetch holds until stopped
	o.mu.Unlock()
	p := NewMockProgress(gomock.NewController(t))
	m, _ := newManager(t, p, 0)
	first := p.EXPECT().ResetCDN("w1")
	failed := p.EXPECT().FinishCDN("w1", 0, false).After(first)
	second := p.EXPECT().ResetCDN("w1").After(failed)
	for i := range 3 {
		p.EXPECT().SetCDNPiece("w1", i).After(second)
	}
	p.EXPECT().FinishCDN("w1", 3, true).After(second)
	src := Source{TaskID: "w1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	firstDone := make(chan Result, 1)
	if _, err := m.Start(src, func(r Result) { firstDone <- r }); err != nil {
		t.Fatal(err)
	}
	if _, res := start(t, m, src); !res.OK {
		t.Fatalf("second fetch: %+v", res)
	}
	if r := <-firstDone; r.OK {
		t.Fatal("the first fetch was not stopped")
	}
}

// An md5 computation that ends after GC dropped its file, and the file's
// cache, writes no .md5 sidecar: it would be left without a .meta, by
// which disk GC lists tasks, and never removed.
func TestNoMd5SidecarForADroppedFile(t *testing.T) {
	o := newOriginT(t, blake3Data())
	p := NewMockProgress(gomock.NewController(t))
	m, st := newManager(t, p, 0)
	expectRun(p, "d1", 3)
	src := Source{TaskID: "d1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	if _, res := start(t, m, src); !res.OK {
		t.Fatalf("result %+v", res)
	}
	cf := m.file("d1")
	if err := m.Delete("d1", true); err != nil {
		t.Fatal(err)
	}
	m.saveMd5s("d1", cf) // the last piece md5 of a pull that raced the GC
	if _, err := os.Stat(st.DataPath("d1") + ".md5"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("md5 sidecar of a deleted task: %v", err)
	}
}
