package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
)

// POST /task/metrics is unauthenticated: a client sending a new callSystem,
// IP and backsourceReason each time must not add series without end, and a
// normal report still gets its own.
func TestTaskMetricsHostileLabels(t *testing.T) {
	f := newFixture(t)
	post := func(req types.TaskMetricsRequest) {
		t.Helper()
		b, _ := json.Marshal(req)
		if st, body := f.do(t, "POST", "/task/metrics", "application/json", string(b)); st != 200 || body != "null" {
			t.Fatalf("task metrics: %d %s", st, body)
		}
	}
	post(types.TaskMetricsRequest{IP: "10.0.0.1", CallSystem: "dfdaemon", BacksourceReason: "3", Duration: 2})
	post(types.TaskMetricsRequest{IP: "::ffff:10.0.0.1", CallSystem: "dfdaemon", Success: true, Duration: 2, FileLength: 10})
	const reports = 300
	for i := range reports {
		post(types.TaskMetricsRequest{IP: fmt.Sprintf("2001:db8::%x", i+1), CallSystem: fmt.Sprint("cs-", i),
			BacksourceReason: fmt.Sprint("reason-", i), Duration: 1})
		post(types.TaskMetricsRequest{IP: fmt.Sprintf("h%d\"} 1\n", i), CallSystem: strings.Repeat("x", 200) + fmt.Sprint(i),
			BacksourceReason: fmt.Sprint(5000 + i), Success: true, Duration: 1, FileLength: 1})
	}
	st, page := f.do(t, "GET", "/metrics", "", "")
	if st != 200 {
		t.Fatalf("/metrics: HTTP %d", st)
	}
	count := map[string]int{}
	for _, line := range strings.Split(page, "\n") {
		if name, _, ok := strings.Cut(line, "{"); ok && strings.HasPrefix(name, "dragonfly_dfget_") {
			count[name]++
		}
	}
	t.Logf("series after %d hostile reports: %v", 2*reports, count)
	for _, name := range []string{"dragonfly_dfget_download_total", "dragonfly_dfget_download_failed_total",
		"dragonfly_dfget_download_size_bytes_total", "dragonfly_dfget_download_duration_seconds_count"} {
		if count[name] == 0 || count[name] > metrics.MaxCallSystems+2 {
			t.Errorf("%s: %d series, want 1 to %d", name, count[name], metrics.MaxCallSystems+2)
		}
	}
	for _, want := range []string{
		`dragonfly_dfget_download_total{callsystem="dfdaemon",peer="10.0.0.1"} 2`,
		`dragonfly_dfget_download_failed_total{callsystem="dfdaemon",peer="10.0.0.1",reason="3"} 1`,
		`dragonfly_dfget_download_size_bytes_total{callsystem="dfdaemon",peer="10.0.0.1"} 10`,
		`dragonfly_dfget_download_failed_total{callsystem="other",peer="other",reason="invalid"}`,
		`dragonfly_dfget_download_total{callsystem="invalid",peer="invalid"} 300`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
}
