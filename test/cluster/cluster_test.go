package cluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/cluster/synth"
	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

func TestOwnerPid(t *testing.T) {
	for name, want := range map[string]int{
		"dmf123-4-origin":            123,
		"/tmp/dmf77-abc/hosts/x":     77,
		"--home /tmp/dmf9-1/h/dfget": 9,
		"dmf12b":                     0,
		"other":                      0,
		"dmf-3-":                     0,
	} {
		got, ok := ownerPid(name)
		if ok != (want != 0) || got != want {
			t.Errorf("ownerPid(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

func TestAddressesStayInBenchmarkRange(t *testing.T) {
	for _, tc := range []struct {
		index, host int
		want        string
	}{{0, 1, "198.18.0.1"}, {255, 2, "198.18.255.2"}, {256, 10, "198.19.0.10"}, {511, 100, "198.19.255.100"}} {
		if got := subnetAddr(tc.index, tc.host); got != tc.want {
			t.Errorf("subnetAddr(%d,%d) = %s, want %s", tc.index, tc.host, got, tc.want)
		}
	}
	// Interface names must fit IFNAMSIZ-1.
	if n := vethName(subnets-1, maxHosts); len(n) > 15 {
		t.Errorf("veth name %q too long", n)
	}
	if n := bridgeName(subnets - 1); len(n) > 15 {
		t.Errorf("bridge name %q too long", n)
	}
}

func TestTbfArgs(t *testing.T) {
	got := strings.Join(tbfArgs("-n", "ns1", "eth0", 400*Mbit), " ")
	want := "-n ns1 qdisc replace dev eth0 root tbf rate 400000000bit burst 200000 latency 50ms"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Low rates keep a bucket big enough for a GSO packet.
	if got := tbfArgs("", "", "v", 1*Mbit); got[len(got)-3] != "32768" {
		t.Errorf("1 Mbit burst: %v", got)
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{"origin": true, "peer-12": true, "": true, "a b": false, "x/y": false, "abcdefghijklmnopq": false} {
		if validName(s) != want {
			t.Errorf("validName(%q) = %v", s, !want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP x y
# TYPE dragonfly_supernode_http_requests_total counter
dragonfly_supernode_http_requests_total{code="200",handler="/_ping"} 3
dragonfly_supernode_http_requests_total{code="200",handler="/peer/task"} 4.5
go_goroutines 12
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := SumMetric(m, "dragonfly_supernode_http_requests_total"); got != 7.5 {
		t.Errorf("sum = %v", got)
	}
	if m["go_goroutines"] != 12 {
		t.Errorf("go_goroutines = %v", m["go_goroutines"])
	}
	if _, err := ParseMetrics(strings.NewReader("bad\n")); err == nil {
		t.Error("malformed line accepted")
	}
}

func TestBinaryMissing(t *testing.T) {
	t.Setenv(BinEnv, t.TempDir())
	_, err := Binary("dfget")
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("err = %v", err)
	}
}

func TestZombieAndAlive(t *testing.T) {
	if !zombie([]byte("12 (a b) Z 1 2")) || zombie([]byte("12 (sleep) S 1")) {
		t.Error("zombie state misread")
	}
	if !alive(os.Getpid()) {
		t.Error("self not alive")
	}
}

// startDetached starts a process that leaves its process group and whose
// command line names dir, as the dfget peer server does.
func startDetached(t *testing.T, h *Host, dir string) int {
	t.Helper()
	pidFile := filepath.Join(dir, "detached.pid")
	_, err := h.Run(context.Background(), Exec{Label: h.NextLabel("spawn"), Path: "sh",
		Args: []string{"-c", `setsid sh -c 'sleep 300; : ` + dir + `' >/dev/null 2>&1 & echo $! > ` + pidFile}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err != nil || zombie(b)
}

// fetch downloads a synthetic file with curl on h and verifies it.
func fetch(t *testing.T, h *Host, o *Origin, name string, size int64) time.Duration {
	t.Helper()
	out := filepath.Join(h.Dir(), name)
	p, err := h.StartCurl(context.Background(), o.URL(name, size), out, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := synth.Verify(f, name, size); err != nil {
		t.Fatalf("%s on %s: %v", name, h.Name, err)
	}
	return p.Duration()
}

func TestLoopbackCluster(t *testing.T) {
	imagetest.NeedTool(t, "curl")
	c := NewForTest(t, Options{Mode: ModeLoopback})
	o1, err := c.AddHost(context.Background(), HostSpec{Name: "origin", Uplink: 10 * Mbit})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := c.AddHost(context.Background(), HostSpec{Name: "peer"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(o1.IP, "127.") || o1.IP == peer.IP {
		t.Fatalf("loopback addresses %s %s", o1.IP, peer.IP)
	}
	if _, err := peer.Counters(); !errors.Is(err, ErrNoCounters) {
		t.Fatalf("counters in loopback mode: %v", err)
	}
	o, err := c.StartOrigin(context.Background(), o1)
	if err != nil {
		t.Fatal(err)
	}
	const size = 3<<20 + 11
	fetch(t, peer, o, "loop.bin", size)
	if n, err := o.BytesServed(context.Background(), "loop.bin", size); err != nil || n != size {
		t.Fatalf("origin served %d, %v; want %d", n, err, size)
	}
	pid := startDetached(t, peer, c.Dir())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("detached process %d survived teardown", pid)
	}
	if !o.Proc.Exited() {
		t.Error("origin survived teardown")
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Errorf("run directory left: %v", err)
	}
}

func TestNetnsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	imagetest.NeedTool(t, "curl")
	c := NewForTest(t, Options{Mode: ModeNetns})
	ctx := context.Background()
	const rate = 20 * Mbit
	oh, err := c.AddHost(ctx, HostSpec{Name: "origin", Uplink: rate})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.AddHost(ctx, HostSpec{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.AddHost(ctx, HostSpec{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Host{oh, a, b} {
		if !strings.HasPrefix(h.IP, "198.18.") && !strings.HasPrefix(h.IP, "198.19.") {
			t.Fatalf("host %s has address %s outside 198.18.0.0/15", h.Name, h.IP)
		}
	}
	o, err := c.StartOrigin(ctx, oh)
	if err != nil {
		t.Fatal(err)
	}
	// b serves too, so that both directions between peers are exercised.
	ob, err := c.StartOrigin(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	fetch(t, a, ob, "ab.bin", 1<<20)
	fetch(t, b, o, "bo.bin", 64<<10)

	before, err := oh.Counters()
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	took := fetch(t, a, o, "shaped.bin", size)
	after, err := oh.Counters()
	if err != nil {
		t.Fatal(err)
	}
	expected := time.Duration(float64(size*8) / rate * float64(time.Second))
	t.Logf("%d bytes over %d bit/s took %v (fluid %v); origin sent %d bytes on the wire",
		size, rate, took, expected, after.Sub(before).Sent)
	if took < expected*8/10 {
		t.Errorf("shaped download took %v, want >= %v", took, expected*8/10)
	}
	if sent := after.Sub(before).Sent; sent < size || sent > size*11/10 {
		t.Errorf("origin interface sent %d bytes for a %d-byte file", sent, size)
	}

	pid := startDetached(t, a, c.Dir())
	namespaces := []string{oh.Namespace(), a.Namespace(), b.Namespace()}
	bridge := c.net.bridge
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("detached process %d survived teardown", pid)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if strings.Contains(string(out), ns) {
			t.Errorf("namespace %s left after teardown", ns)
		}
	}
	links, err := exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(links), bridge+":") || strings.Contains(string(links), bridge+"@") {
		t.Errorf("bridge %s left after teardown", bridge)
	}
	prefix := "dmf" + strconv.Itoa(c.net.index) + "v"
	if strings.Contains(string(links), prefix) {
		t.Errorf("veth %s* left after teardown:\n%s", prefix, links)
	}
	if len(pidsReferencing(c.Dir())) != 0 {
		t.Error("processes referencing the run directory left")
	}
}

func TestSweepRemovesDeadRun(t *testing.T) {
	if reason := netnsUnavailable(context.Background()); reason != "" {
		imagetest.Unavailable(t, "network namespaces unavailable: %s", reason)
	}
	// A pid that is certainly dead: a child that has been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	ns := runPrefix(dead) + "0-stale"
	if err := ip(context.Background(), "netns", "add", ns); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, runPrefix(dead)+"x")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sweepStale(context.Background(), base)
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), ns) {
		_ = ip(context.Background(), "netns", "del", ns)
		t.Errorf("stale namespace %s not swept", ns)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("stale run directory not swept: %v", err)
	}
}
