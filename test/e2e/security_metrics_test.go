package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// Unauthenticated clients choose the callSystem, IP and backsourceReason of
// /task/metrics and the IP of a peer registration: sent with new values
// each time, they leave the supernode's /metrics with a bounded number of
// series, and a normal report keeps its own.
func TestSecurityMetricsLabelsBounded(t *testing.T) {
	sn := startSupernode(t, t.TempDir())
	post := func(path string, v any, want int) {
		t.Helper()
		b, _ := json.Marshal(v)
		resp, err := httpc.Post(sn.apiURL+path, "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("POST %s: %v (supernode exited: %t)", path, err, sn.Exited())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: HTTP %d, want %d", path, resp.StatusCode, want)
		}
	}
	post("/task/metrics", types.TaskMetricsRequest{IP: "10.0.0.1", CallSystem: "dfdaemon", BacksourceReason: "1003"}, http.StatusOK)
	const n = 500
	for i := range n {
		post("/task/metrics", types.TaskMetricsRequest{IP: fmt.Sprintf("2001:db8::%x", i+1), CallSystem: fmt.Sprint("cs-", i),
			BacksourceReason: fmt.Sprint("r", i)}, http.StatusOK)
		post("/task/metrics", types.TaskMetricsRequest{IP: fmt.Sprint("10.0.0.1\n", i), CallSystem: fmt.Sprint("cs ", i),
			BacksourceReason: fmt.Sprint(2000 + i), Success: true, Duration: 1, FileLength: 1}, http.StatusOK)
		post("/api/v1/peers", types.PeerCreateRequest{IP: fmt.Sprintf("10.1.%d.%d", i>>8, i&0xff), HostName: "h", Port: 15000},
			http.StatusCreated)
	}
	resp, err := httpc.Get(sn.apiURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	count := map[string]int{}
	for _, line := range strings.Split(page, "\n") {
		if name, _, ok := strings.Cut(line, "{"); ok {
			count[name]++
		}
	}
	t.Logf("/metrics is %d bytes after %d hostile reports and %d peer registrations; series: download_total %d, "+
		"download_failed_total %d, size_bytes_total %d, peers %d", len(b), 2*n, n, count["dragonfly_dfget_download_total"],
		count["dragonfly_dfget_download_failed_total"], count["dragonfly_dfget_download_size_bytes_total"],
		count["dragonfly_supernode_peers"])
	// 32 values of each label, plus other and invalid.
	for _, name := range []string{"dragonfly_dfget_download_total", "dragonfly_dfget_download_failed_total",
		"dragonfly_dfget_download_size_bytes_total", "dragonfly_supernode_peers"} {
		if count[name] == 0 || count[name] > 34 {
			t.Errorf("%s: %d series, want 1 to 34", name, count[name])
		}
	}
	for _, want := range []string{
		`dragonfly_dfget_download_failed_total{callsystem="dfdaemon",peer="10.0.0.1",reason="1003"} 1`,
		`dragonfly_dfget_download_total{callsystem="invalid",peer="invalid"} 500`,
		`dragonfly_supernode_peers{peer="127.0.0.1"} 1`,
		`dragonfly_supernode_peers{peer="other"}`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if sn.Exited() {
		t.Fatal("the supernode exited")
	}
}
