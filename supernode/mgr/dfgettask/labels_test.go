package dfgettask

import (
	"fmt"
	"testing"

	"github.com/damselfly-p2p/damselfly/supernode/metrics"
)

// callSystems gathers the dfget task families of mx: the callsystem values
// of each, and the sum of the gauge's series.
func callSystems(t *testing.T, mx *metrics.Metrics) (map[string]map[string]bool, float64) {
	t.Helper()
	fams, err := mx.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out, gauge := map[string]map[string]bool{}, 0.0
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			for _, lp := range s.GetLabel() {
				if lp.GetName() == "callsystem" {
					if out[f.GetName()] == nil {
						out[f.GetName()] = map[string]bool{}
					}
					out[f.GetName()][lp.GetValue()] = true
				}
			}
			if f.GetName() == "dragonfly_supernode_dfgettasks" {
				gauge += s.GetGauge().GetValue()
			}
		}
	}
	return out, gauge
}

// Registrations name their callsystem: a client naming a new one each time
// adds a bounded number of series, the gauge stays balanced, and a normal
// callsystem keeps its own series.
func TestCallSystemLabelsBounded(t *testing.T) {
	mx := metrics.New()
	m := New(Config{SuperPID: "super"}, Metrics{Gauge: mx.DfgetTasks, Registered: mx.DfgetTasksReg, Failed: mx.DfgetTasksFailed, Labels: mx.Labels})
	const n = 1000
	add := func(cid, cs string) {
		t.Helper()
		if err := m.Add(Task{CID: cid, TaskID: "t", PeerID: "p-" + cid, Path: "/peer/file/" + cid, CallSystem: cs}); err != nil {
			t.Fatal(err)
		}
		if err := m.SetStatus(cid, "t", StatusFailed); err != nil {
			t.Fatal(err)
		}
	}
	add("normal", "dfdaemon")
	for i := range n {
		add(fmt.Sprint("c", i), fmt.Sprint("cs-", i))
	}
	got, gauge := callSystems(t, mx)
	for _, fam := range []string{"dragonfly_supernode_dfgettasks", "dragonfly_supernode_dfgettasks_registered_total",
		"dragonfly_supernode_dfgettasks_failed_total"} {
		t.Logf("%s: %d callsystems after %d registrations", fam, len(got[fam]), n+1)
		if len(got[fam]) > metrics.MaxCallSystems+1 || !got[fam]["dfdaemon"] || !got[fam][metrics.Other] {
			t.Errorf("%s: %d callsystems (dfdaemon %t, other %t), want at most %d", fam, len(got[fam]),
				got[fam]["dfdaemon"], got[fam][metrics.Other], metrics.MaxCallSystems+1)
		}
	}
	if gauge != n+1 {
		t.Errorf("gauge sums to %v, want %d", gauge, n+1)
	}
	m.Delete("normal", "t")
	for i := range n {
		m.Delete(fmt.Sprint("c", i), "t")
	}
	if _, gauge := callSystems(t, mx); gauge != 0 {
		t.Errorf("gauge sums to %v after every task is gone", gauge)
	}
}
