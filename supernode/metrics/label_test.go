package metrics

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/damselfly-p2p/damselfly/dfget/config"
)

// series gathers m's registry and returns, for the family name, the values
// each label takes over its series, and the number of series.
func series(t *testing.T, m *Metrics, name string) (map[string]map[string]bool, int) {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]map[string]bool{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, lp := range s.GetLabel() {
				if values[lp.GetName()] == nil {
					values[lp.GetName()] = map[string]bool{}
				}
				values[lp.GetName()][lp.GetValue()] = true
			}
		}
		return values, len(f.GetMetric())
	}
	return values, 0
}

// A client sending a new callsystem, IP and reason each time creates a
// bounded number of series; the values seen before the flood keep theirs.
func TestLabelsBoundSeries(t *testing.T) {
	m := New()
	l := m.Labels
	failed := func(cs, ip, r string) {
		m.DfgetFailed.WithLabelValues(l.CallSystem.Value(cs), l.Peer.Value(ip), l.Reason.Value(r)).Inc()
	}
	failed("dfdaemon", "10.0.0.1", "3")
	failed("k8s/image-puller", "2001:db8::1", "1001")
	const flood = 2000
	for i := range flood {
		failed(fmt.Sprintf("cs-%d", i), fmt.Sprintf("2001:db8:f::%x:%x", i>>16, i&0xffff), fmt.Sprint("r", i))
		failed(fmt.Sprintf("cs %d\n", i), fmt.Sprintf("host-%d", i), fmt.Sprintf("0%d", i))
	}
	failed("dfdaemon", "10.0.0.1", "3")
	values, n := series(t, m, "dragonfly_dfget_download_failed_total")
	t.Logf("%d series after %d hostile reports: %d callsystems, %d peers, %d reasons",
		n, 2*flood, len(values["callsystem"]), len(values["peer"]), len(values["reason"]))
	if c, p, r := len(values["callsystem"]), len(values["peer"]), len(values["reason"]); c > MaxCallSystems+2 || p > MaxPeers+2 || r > 4 {
		t.Errorf("%d callsystems, %d peers, %d reasons: want at most %d, %d and 4", c, p, r, MaxCallSystems+2, MaxPeers+2)
	}
	if n > MaxCallSystems+2 {
		t.Errorf("%d series after %d reports with distinct values", n, 2*flood)
	}
	for label, v := range map[string]string{"callsystem": "k8s/image-puller", "peer": "2001:db8::1", "reason": "1001"} {
		if !values[label][v] {
			t.Errorf("%s %q has no series of its own: %v", label, v, values[label])
		}
	}
	for _, label := range []string{"callsystem", "peer", "reason"} {
		if !values[label][Invalid] {
			t.Errorf("no %s=%q series", label, Invalid)
		}
	}
	if !values["callsystem"][Other] || !values["peer"][Other] {
		t.Errorf("no %q series for callsystem or peer", Other)
	}
	// The values admitted first keep their series after the flood.
	var cs, ip, r string
	fams, _ := m.Registry.Gather()
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			if f.GetName() == "dragonfly_dfget_download_failed_total" && s.GetCounter().GetValue() == 2 {
				cs, ip, r = s.GetLabel()[0].GetValue(), s.GetLabel()[1].GetValue(), s.GetLabel()[2].GetValue()
			}
		}
	}
	if cs != "dfdaemon" || ip != "10.0.0.1" || r != "3" {
		t.Errorf("dfdaemon's two failures counted under (%q, %q, %q)", cs, ip, r)
	}
}

// One address is one peer value, and what is not an address is Invalid.
func TestPeerLabelNormalises(t *testing.T) {
	l := NewLabels().Peer
	for in, want := range map[string]string{
		"10.0.0.1":          "10.0.0.1",
		"::ffff:10.0.0.1":   "10.0.0.1",
		"2001:DB8:0:0::1":   "2001:db8::1",
		"fe80::1%eth0":      "fe80::1",
		"fe80::1%anything":  "fe80::1",
		"010.0.0.1":         Invalid,
		"10.0.0.1:8002":     Invalid,
		"host.example":      Invalid,
		"":                  Invalid,
		"10.0.0.1\n# HELP ": Invalid,
	} {
		if got := l.Value(in); got != want {
			t.Errorf("peer %q: %q, want %q", in, got, want)
		}
	}
}

// Every reason dfget reports has its own value; nothing else does.
func TestReasonLabelKnowsDfgetReasons(t *testing.T) {
	l := NewLabels().Reason
	for _, r := range []int{config.ReasonNone, config.ReasonRegisterFail, config.ReasonMd5NotMatch, config.ReasonDownloadError,
		config.ReasonNoSpace, 5, config.ReasonWriteError, 7, config.ReasonNodeEmpty, config.ReasonSourceError, config.ReasonUserSpecified} {
		for _, code := range []int{r, r + config.ReasonNotBSAddition} {
			if s := strconv.Itoa(code); l.Value(s) != s {
				t.Errorf("reason %s: %q", s, l.Value(s))
			}
		}
	}
	for _, s := range []string{"", "9", "11", "99", "03", "+3", " 3", "-1", "1e3", "2003", "1000000", "abc"} {
		if got := l.Value(s); got != Invalid {
			t.Errorf("reason %q: %q, want %q", s, got, Invalid)
		}
	}
}

// callsystem values are names: odd characters or a long text are Invalid;
// the bound is per Metrics, not per process.
func TestCallSystemLabel(t *testing.T) {
	m := New()
	for in, want := range map[string]string{
		"":                                       "",
		"dfdaemon":                               "dfdaemon",
		"ns/app-1.2_x:y":                         "ns/app-1.2_x:y",
		"a b":                                    Invalid,
		"a\"b":                                   Invalid,
		"é":                                      Invalid,
		string(make([]byte, MaxCallSystemLen)):   Invalid,
		fmt.Sprintf("%0*d", MaxCallSystemLen, 7): fmt.Sprintf("%0*d", MaxCallSystemLen, 7),
		fmt.Sprintf("%0*d", MaxCallSystemLen+1, 7): Invalid,
	} {
		if got := m.Labels.CallSystem.Value(in); got != want {
			t.Errorf("callsystem %q: %q, want %q", in, got, want)
		}
	}
	for i := range MaxCallSystems {
		m.Labels.CallSystem.Value(fmt.Sprint("c", i))
	}
	if got := m.Labels.CallSystem.Value("late"); got != Other {
		t.Errorf("callsystem after the bound: %q, want %q", got, Other)
	}
	if got := New().Labels.CallSystem.Value("late"); got != "late" {
		t.Errorf("a second Metrics shares the first's bound: %q", got)
	}
}
