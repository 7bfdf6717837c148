package cdn

import (
	"io"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/netguard"
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
