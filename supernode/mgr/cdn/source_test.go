package cdn

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/netguard"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// loopbackAllow is the --source-allow of tests whose origins are on
// loopback.
func loopbackAllow() []string { return []string{"127.0.0.1"} }

// Without --source-allow, no way the supernode fetches a source reaches a
// loopback address: the CDN pattern (shared and per-task clients) and the
// source pattern's probe.
func TestSourceGuardRefusesLoopback(t *testing.T) {
	o := newOriginT(t, []byte("secret"))
	st, err := store.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	p := NewMockProgress(gomock.NewController(t))
	p.EXPECT().ResetCDN(gomock.Any()).AnyTimes()
	m := New(Config{}, st, p, Metrics{}, log)
	t.Cleanup(m.Close)
	src := Source{TaskID: "t1", RawURL: o.URL + "/f", TaskURL: o.URL + "/f"}
	insecure := src
	insecure.TaskID, insecure.Insecure = "t2", true
	probe := src
	probe.TaskID = "t3"
	for name, run := range map[string]func() error{
		"cdn":      func() error { _, err := m.Start(src, func(Result) {}); return err },
		"insecure": func() error { _, err := m.Start(insecure, func(Result) {}); return err },
		"source":   func() error { _, err := m.StartSource(probe, func(Result) {}); return err },
	} {
		err := run()
		if !netguard.IsRefused(err) || !strings.Contains(err.Error(), "source address 127.0.0.1 is refused: loopback; allow it with --source-allow") {
			t.Errorf("%s: want the loopback refusal, got %v", name, err)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.statuses) != 0 {
		t.Fatalf("the origin was reached %d times", len(o.statuses))
	}
}

// The source pattern with a Range header: the task is that range of the
// source, so its length, pieces and digests are of the ranged bytes (the
// bytes clients fetch by re-basing piece ranges onto the Range's start),
// not of the whole resource. A suffix range, which clients cannot re-base
// onto, is refused before the source is asked.
func TestSourcePatternRange(t *testing.T) {
	data := make([]byte, 3*piece.DefaultSize)
	for i := range data {
		data[i] = byte(i * 13)
	}
	o := newOriginT(t, data)
	p := NewMockProgress(gomock.NewController(t))
	m, _ := newManager(t, p, 0)
	ps := int(piece.DefaultSize)
	want := data[1000 : 1000+ps+500]
	p.EXPECT().ResetCDN("r1")
	p.EXPECT().SetCDNPiece("r1", gomock.Any()).Times(2)
	p.EXPECT().FinishCDN("r1", 2, true)
	done := make(chan Result, 1)
	rg := "bytes=1000-" + strconv.Itoa(1000+len(want)-1)
	started, err := m.StartSource(Source{TaskID: "r1", RawURL: o.URL + "/f", Headers: map[string]string{"Range": rg}},
		func(r Result) { done <- r })
	if err != nil || started.HTTPFileLength != int64(len(want)) {
		t.Fatalf("start with %s: %+v %v, want length %d", rg, started, err, len(want))
	}
	var res Result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("source digests did not finish")
	}
	if !res.OK || res.RealMd5 != md5hex(want) || res.FileLength != int64(len(want)) || res.PieceTotal != 2 {
		t.Fatalf("result %+v", res)
	}
	for i := range 2 {
		b := want[i*ps : min((i+1)*ps, len(want))]
		if got := m.PieceDigest("r1", i); got != digest.Sum(digest.BLAKE3, b) {
			t.Fatalf("piece %d blake3 %v is not of the range's bytes", i, got)
		}
		if got := m.PieceMd5("r1", i); got != piece.Md5Value(b) {
			t.Fatalf("piece %d md5 %q is not of the range's bytes", i, got)
		}
	}
	o.mu.Lock()
	n := len(o.statuses)
	o.mu.Unlock()
	_, err = m.StartSource(Source{TaskID: "r2", RawURL: o.URL + "/f", Headers: map[string]string{"Range": "bytes=-10"}},
		func(Result) { t.Error("suffix range task ran") })
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "suffix range") || len(o.statuses) != n {
		t.Fatalf("suffix range: err %v, origin asked %d times", err, len(o.statuses)-n)
	}
}
