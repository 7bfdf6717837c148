package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/load"
	"github.com/damselfly-p2p/damselfly/test/bench/swarm"
)

func result(wall, fluid time.Duration, origin int64, ok bool) *swarm.Result {
	return resultOf(8, wall, fluid, origin, ok)
}

func resultOf(peers int, wall, fluid time.Duration, origin int64, ok bool) *swarm.Result {
	return &swarm.Result{Client: swarm.Dfget, Peers: peers, Size: 1000, OriginRate: 400e6, Wall: wall, Fluid: fluid,
		OriginBytes: origin, AllVerified: ok, PeerUpload: -1, MaxRSS: 1 << 20, SupernodeServed: 4000,
		PeerResults: []swarm.Peer{{Verified: ok}}}
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  Row
		pass bool
	}{
		{"met", Row{Target: true, Result: resultOf(16, 3*time.Second, 2*time.Second, 1020, true)}, true},
		{"slow", Row{Target: true, Result: resultOf(16, 3100*time.Millisecond, 2*time.Second, 1000, true)}, false},
		{"origin", Row{Target: true, Result: result(2*time.Second, 2*time.Second, 1021, true)}, false},
		{"wrong bytes", Row{Target: true, Result: result(2*time.Second, 2*time.Second, 1000, false)}, false},
		{"error", Row{Target: true, Result: result(2*time.Second, 2*time.Second, 1000, true), Error: "boom"}, false},
		{"not a target", Row{Result: result(2*time.Second, 2*time.Second, 1000, true)}, false},
		{"8 peers at 1.25x", Row{Target: true, Result: resultOf(8, 2500*time.Millisecond, 2*time.Second, 1000, true)}, true},
		{"8 peers at 1.3x", Row{Target: true, Result: resultOf(8, 2600*time.Millisecond, 2*time.Second, 1000, true)}, false},
	} {
		if got := tc.row.Pass(); got != tc.pass {
			t.Errorf("%s: Pass() = %v", tc.name, got)
		}
	}
}

func TestReport(t *testing.T) {
	r := &Report{Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Mode: "netns", Rows: []Row{
		{Spec: "dfget N=8", Target: true, Result: result(2400*time.Millisecond, 2*time.Second, 1000, true)},
		{Spec: "curl N=8", Result: result(20*time.Second, 16*time.Second, 8000, true)},
	}, Loads: []LoadRow{{Target: true, Result: &load.Result{Clients: 10, Completed: 10, TaskP99: time.Millisecond}}}}
	if f := r.Failed(); len(f) != 0 {
		t.Fatalf("failed: %v", f)
	}
	var b strings.Builder
	r.WriteMarkdown(&b)
	out := b.String()
	for _, want := range []string{"| dfget | 8 | 1000 B | 400 Mbit/s | 2.40 | 2.00 | 1.20 | 1.000 | n/a | 0.50 |", "pass (", "All runs correct"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}

	r.Loads[0].Result.Failed = 1
	r.Rows = append(r.Rows, Row{Spec: "dfget N=16", Target: true, Error: "supernode exited"})
	if f := r.Failed(); len(f) != 2 {
		t.Fatalf("failed = %v, want the load failure and the error row", f)
	}
	b.Reset()
	r.WriteMarkdown(&b)
	if !strings.Contains(b.String(), "ERROR: supernode exited") || !strings.Contains(b.String(), "2 problem(s)") {
		t.Errorf("markdown:\n%s", b.String())
	}

	path, err := r.Save(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "20260102T030405Z.json" {
		t.Errorf("path %s", path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Rows) != 3 || back.Rows[0].Result.Wall != 2400*time.Millisecond {
		t.Errorf("round trip: %v %+v", err, back.Rows)
	}
}

// A section's missed target is a problem of the run: the summary must not
// say every target was met.
func TestSectionCheck(t *testing.T) {
	s := Section{Title: "Single download"}
	if got := s.Check("dfget warm", true); got != "pass" || len(s.Missed) != 0 {
		t.Fatalf("Check(true) = %q, missed %v", got, s.Missed)
	}
	if got := s.Check("dfget cold", false); got != "FAIL" {
		t.Fatalf("Check(false) = %q", got)
	}
	r := &Report{Sections: []Section{s}}
	f := r.Failed()
	if len(f) != 1 || f[0] != "Single download: dfget cold target missed" {
		t.Fatalf("Failed() = %q", f)
	}
	var b strings.Builder
	r.WriteMarkdown(&b)
	if out := b.String(); strings.Contains(out, "All runs correct") || !strings.Contains(out, "1 problem(s)") {
		t.Errorf("markdown:\n%s", out)
	}
}

// A target row run in loopback mode, where no link is shaped, is never
// reported as met: its target column says so, the summary names it, and it
// is not counted as a failure unless its bytes are wrong.
func TestLoopbackTargetNotChecked(t *testing.T) {
	met := resultOf(8, 2*time.Second, 2*time.Second, 1000, true) // would pass in netns mode
	met.Mode = "loopback"
	r := &Report{Mode: "loopback", Rows: []Row{{Spec: "dfget N=8", Target: true, Result: met}}}
	if r.Rows[0].Pass() {
		t.Error("a loopback target row passes")
	}
	if f := r.Failed(); len(f) != 0 {
		t.Errorf("failed = %v, want nothing", f)
	}
	if u := r.Unchecked(); len(u) != 1 || u[0] != "dfget N=8" {
		t.Errorf("unchecked = %v", u)
	}
	var b strings.Builder
	r.WriteMarkdown(&b)
	out := b.String()
	if strings.Contains(out, "pass") || strings.Contains(out, "all checked targets met") ||
		!strings.Contains(out, "| "+NotCheckedLoopback+" |") || !strings.Contains(out, "1 target(s) were not checked") {
		t.Errorf("markdown:\n%s", out)
	}

	sec := Section{Title: "cluster"}
	if got := sec.NotChecked("rendezvous time"); got != NotCheckedLoopback {
		t.Errorf("NotChecked = %q", got)
	}
	r.Sections = append(r.Sections, sec)
	if u := r.Unchecked(); len(u) != 2 || u[1] != "cluster: rendezvous time" || len(r.Failed()) != 0 {
		t.Errorf("unchecked = %v, failed = %v", u, r.Failed())
	}

	met.AllVerified = false
	met.PeerResults[0].Verified = false
	if f := r.Failed(); len(f) != 1 || !strings.Contains(f[0], "wrong content") {
		t.Errorf("failed with wrong bytes = %v", f)
	}
}
