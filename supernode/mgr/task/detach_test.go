package task

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

// A task GC is dropping (detached) starts no CDN: a registration is told
// to register again (the mock CDN fails the test on any Start), so the
// fetch GC stops is the task's last. Once GC removed it, a registration
// makes the task anew. The task left the gauge when it was detached: its
// fetch ending after does not count it again.
func TestDetachedTaskStartsNoCDN(t *testing.T) {
	d := newDeps(t)
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tasks"}, []string{"cdnstatus"})
	log := logrus.New()
	log.SetOutput(io.Discard)
	d.m = New(Config{AdvertiseIP: "10.0.0.1", FailAccessInterval: time.Minute}, d.cdn, d.prog, d.peers, d.dfget,
		Metrics{Tasks: gauge}, log)
	id := running(t, d)
	if !d.m.Detach(id) || d.m.Detach(id) {
		t.Fatal("Detach reports a task there once")
	}
	d.cdnDone(cdn.Result{Err: io.ErrUnexpectedEOF}) // GC stopped the fetch
	if _, err := d.m.Register(RegisterParams{Req: validReq()}); err == nil || !strings.Contains(err.Error(), "register again") {
		t.Fatalf("register of a detached task: %v", err)
	}
	for _, s := range []string{types.CDNStatusWaiting, types.CDNStatusRunning, types.CDNStatusFailed} {
		var mm dto.Metric
		if err := gauge.WithLabelValues(s).Write(&mm); err != nil {
			t.Fatal(err)
		}
		if v := mm.GetGauge().GetValue(); v != 0 {
			t.Errorf("gauge %s = %v with the only task detached", s, v)
		}
	}
	d.m.Remove(id)
	if d.m.Has(id) {
		t.Fatal("removed task listed")
	}
	// c1 registers again, on a new peer: the one before is retired.
	d.prog.EXPECT().DropHolder(id, gomock.Any())
	d.prog.EXPECT().PeerDown(gomock.Any())
	running(t, d)
	if !d.m.Has(id) {
		t.Fatal("no task after registering again")
	}
}
