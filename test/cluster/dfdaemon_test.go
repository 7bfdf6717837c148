package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/imagetest"
	"github.com/damselfly-p2p/damselfly/test/procmem"
)

// dfdaemonClusterSize is the layer size: 64 MiB as the target
// run with DAMSELFLY_DFDAEMON_FULL=1, smaller in the regular suite, which
// checks the same properties.
func dfdaemonClusterSize() int {
	if os.Getenv("DAMSELFLY_DFDAEMON_FULL") != "" {
		return 64 << 20
	}
	return 12 << 20
}

// Eight hosts, each with its own dfdaemon, pull the same image of 4
// layers at once with skopeo through their dfdaemon (a registries.conf
// mirror; the registry's own name does not resolve). The registry's link
// is shaped: every layer is read from it once (its access log), and every
// host's copy is identical to the image pushed.
func TestDfdaemonClusterPull(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: end-to-end test with docker-registry, skopeo and bin/dfdaemon")
	}
	registryBin, skopeoBin := imagetest.NeedTool(t, "docker-registry"), imagetest.NeedTool(t, "skopeo")
	const hosts, regRate = 8, 400 * Mbit
	size := dfdaemonClusterSize()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := NewForTest(t, Options{Mode: ModeNetns})
	reg, sn, img := startImageRegistry(ctx, t, c, registryBin, skopeoBin, regRate, size)
	peers := make([]*Host, hosts)
	daemons := make([]*Proc, hosts)
	for i := range peers {
		var err error
		if peers[i], err = c.AddHost(ctx, HostSpec{Name: fmt.Sprintf("node%d", i+1)}); err != nil {
			t.Fatal(err)
		}
		if daemons[i], err = startDfdaemon(ctx, c, peers[i], reg.Host.Addr(5000), sn.Node()); err != nil {
			t.Fatal(err)
		}
	}
	cpu0 := clusterCPU(reg, sn, daemons)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, hosts)
	took := make([]time.Duration, hosts)
	skopeos := make([]*Proc, hosts)
	for i, h := range peers {
		wg.Go(func() {
			skopeos[i], errs[i] = pullThroughMirror(ctx, h, skopeoBin, h.Addr(65001))
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	last := time.Since(start)
	logClusterCPU(t, last, cpu0, clusterCPU(reg, sn, daemons), skopeos)
	logSwarmMetrics(ctx, t, sn, peers)
	for i, h := range peers {
		if errs[i] != nil {
			t.Fatalf("%s: %v", h.Name, errs[i])
		}
		if err := imagetest.CheckDir(filepath.Join(h.Dir(), "pulled"), img); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
	}
	total := 0
	for _, l := range img.Layers {
		total += len(img.Blobs[l])
	}
	fluid := time.Duration(float64(total*8) / float64(regRate) * float64(time.Second))
	t.Logf("%d hosts pulled %d layers of %d MiB through their dfdaemons: last host after %v, fluid limit %v (ratio %.2f)",
		hosts, len(img.Layers), size>>20, last.Round(time.Millisecond), fluid.Round(time.Millisecond), last.Seconds()/fluid.Seconds())
	for i := range peers {
		rss, _ := daemons[i].PeakRSS()
		t.Logf("%s: done after %v, dfdaemon peak RSS %d MiB", peers[i].Name, took[i].Round(time.Millisecond), rss>>20)
	}
	reads := registryBlobReads(t, reg.LogPath)
	for _, l := range img.Layers {
		if reads[l] != 1 {
			t.Errorf("layer %s read %d times from the registry, want once", l, reads[l])
		}
	}
	if os.Getenv("DAMSELFLY_DFDAEMON_FULL") != "" {
		directRow(ctx, t, peers, skopeoBin, reg.Host.Addr(5000), fluid)
	}
}

// startImageRegistry starts a supernode and a docker-registry whose
// uplink is shaped to rate, and pushes an image of 4 random layers of
// size bytes to it as img:v1.
func startImageRegistry(ctx context.Context, t *testing.T, c *Cluster, registryBin, skopeoBin string, rate int64,
	size int) (*Proc, *Supernode, *imagetest.Image) {
	t.Helper()
	rh, err := c.AddHost(ctx, HostSpec{Name: "registry", Uplink: rate})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := c.AddHost(ctx, HostSpec{Name: "supernode"})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.StartSupernode(ctx, sh)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(rh.Dir(), "registry.yml")
	if err := os.WriteFile(cfg, imagetest.RegistryConfig(filepath.Join(rh.Dir(), "storage"), rh.Addr(5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := rh.Start(ctx, Exec{Label: "registry", Path: registryBin, Args: []string{"serve", cfg}})
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitHTTP(ctx, "http://"+rh.Addr(5000)+"/v2/", "{}", 15*time.Second, reg); err != nil {
		t.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{'d', 'f', 'd'})
	layers := make([][]byte, 4)
	for i := range layers {
		layers[i] = make([]byte, size)
		_, _ = r.Read(layers[i])
	}
	dir := filepath.Join(c.Dir(), "oci")
	img, err := imagetest.WriteOCI(dir, layers)
	if err != nil {
		t.Fatal(err)
	}
	// The harness pushes from the root namespace, over the bridge (the
	// registry's downlink is not shaped).
	out, err := exec.CommandContext(ctx, skopeoBin, "--insecure-policy", "copy", "--dest-tls-verify=false", "oci:"+dir,
		"docker://"+rh.Addr(5000)+"/img:v1").CombinedOutput()
	if err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	_ = os.RemoveAll(dir)
	return reg, sn, img
}

// startDfdaemon runs bin/dfdaemon on h (port 65001) from a v1-style YAML
// file naming the registry, the supernode and the host's IP.
func startDfdaemon(ctx context.Context, c *Cluster, h *Host, registry, node string) (*Proc, error) {
	bin, err := Binary("dfdaemon")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(h.Dir(), "dfdaemon.yml")
	yml := fmt.Sprintf("registry_mirror:\n  remote: http://%s\nsupernodes:\n  - %s\nlocalIP: %s\nratelimit: 0\nport: 65001\n",
		registry, node, h.IP)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		return nil, err
	}
	p, err := h.Start(c.ctx, Exec{Label: h.NextLabel("dfdaemon"), Path: bin,
		Args: []string{"--config", cfg, "--workHome", filepath.Join(h.Dir(), "dfdaemon-home")}})
	if err != nil {
		return nil, err
	}
	return p, WaitHTTP(ctx, "http://"+h.Addr(65001)+"/_ping", "OK", 15*time.Second, p)
}

// pullThroughMirror pulls img:v1 on h with skopeo, through mirror only,
// into <host dir>/pulled.
func pullThroughMirror(ctx context.Context, h *Host, skopeoBin, mirror string) (*Proc, error) {
	conf := filepath.Join(h.Dir(), "registries.conf")
	if err := os.WriteFile(conf, imagetest.MirrorConf("primary.invalid", mirror), 0o644); err != nil {
		return nil, err
	}
	return skopeoPull(ctx, h, skopeoBin, "primary.invalid/img:v1", "pulled", "--registries-conf", conf)
}

// skopeoPull copies ref into <host dir>/<out> on h.
func skopeoPull(ctx context.Context, h *Host, skopeoBin, ref, out string, extra ...string) (*Proc, error) {
	args := append([]string{"--insecure-policy", "copy", "--src-tls-verify=false"}, extra...)
	args = append(args, "docker://"+ref, "dir:"+filepath.Join(h.Dir(), out))
	p, err := h.Start(ctx, Exec{Label: h.NextLabel("skopeo"), Path: skopeoBin, Args: args, Env: []string{"HOME=" + h.Dir()}})
	if err != nil {
		return nil, err
	}
	return p, p.Wait()
}

// registryBlobReads counts the blob GETs the registry answered 200, by
// digest, from its access log.
func registryBlobReads(t *testing.T, log string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 200 `)
	out := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			out[m[1]]++
		}
	}
	return out
}

// directRow pulls the image on every host at once straight from the
// registry, for the comparison row.
func directRow(ctx context.Context, t *testing.T, peers []*Host, skopeoBin, registry string, fluid time.Duration) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(peers))
	procs := make([]*Proc, len(peers))
	for i, h := range peers {
		wg.Go(func() { procs[i], errs[i] = skopeoPull(ctx, h, skopeoBin, registry+"/img:v1", "direct") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("direct pull on %s: %v", peers[i].Name, err)
		}
	}
	d := time.Since(start)
	t.Logf("direct pulls from the registry: last host after %v (%.2f x the swarm's fluid limit), skopeo CPU %.2fs",
		d.Round(time.Millisecond), d.Seconds()/fluid.Seconds(), procsCPU(procs).Seconds())
}

// clusterCPU is the CPU time so far of the registry, the supernode and the
// dfdaemons (summed), by kind.
func clusterCPU(reg *Proc, sn *Supernode, daemons []*Proc) map[string]time.Duration {
	out := map[string]time.Duration{"registry": procmem.CPU(reg.Pid()), "supernode": procmem.CPU(sn.Proc.Pid())}
	for _, d := range daemons {
		out["dfdaemon"] += procmem.CPU(d.Pid())
	}
	return out
}

// logClusterCPU logs the CPU seconds each kind of process spent during the
// pull, against the machine's CPU capacity over the same wall time, so a
// CPU-bound run shows as such.
func logClusterCPU(t *testing.T, wall time.Duration, before, after map[string]time.Duration, skopeos []*Proc) {
	t.Helper()
	spent := map[string]time.Duration{}
	for k, v := range after {
		spent[k] = v - before[k]
	}
	spent["skopeo"] = procsCPU(skopeos)
	var sum time.Duration
	var parts []string
	for _, k := range []string{"dfdaemon", "skopeo", "supernode", "registry"} {
		sum += spent[k]
		parts = append(parts, fmt.Sprintf("%s %.2fs", k, spent[k].Seconds()))
	}
	capacity := wall * time.Duration(runtime.NumCPU())
	t.Logf("CPU during the pull: %s; total %.2fs of %.2fs (%d cores x wall), %.0f%%", strings.Join(parts, ", "),
		sum.Seconds(), capacity.Seconds(), runtime.NumCPU(), 100*sum.Seconds()/capacity.Seconds())
}

// logSwarmMetrics logs where the pieces came from (the supernode's
// scheduling counts) and how each dfdaemon's streams ended.
func logSwarmMetrics(ctx context.Context, t *testing.T, sn *Supernode, peers []*Host) {
	t.Helper()
	m, err := sn.Metrics(ctx)
	if err != nil {
		t.Logf("supernode metrics: %v", err)
		return
	}
	var keys []string
	for k := range m {
		if strings.Contains(k, "pieces_scheduled_total") || strings.Contains(k, "piece_server_sent_bytes") ||
			strings.Contains(k, "cdn_download_size") || strings.Contains(k, "pieces_failed_total") {
			keys = append(keys, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(k, "dragonfly_supernode_"), m[k]))
		}
	}
	sort.Strings(keys)
	t.Logf("supernode: %s", strings.Join(keys, " "))
	for _, h := range peers {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.Addr(65001)+"/metrics", nil)
		resp, err := httpClient().Do(req)
		if err != nil {
			continue
		}
		dm, err := ParseMetrics(resp.Body)
		resp.Body.Close()
		if err != nil {
			continue
		}
		var parts []string
		for k, v := range dm {
			if (strings.Contains(k, "streams_total") || strings.Contains(k, "warmed_total")) && v > 0 {
				parts = append(parts, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(k, "dragonfly_dfdaemon_"), v))
			}
		}
		sort.Strings(parts)
		t.Logf("%s dfdaemon: %s", h.Name, strings.Join(parts, " "))
	}
}

// procsCPU is the CPU time of the exited processes among ps.
func procsCPU(ps []*Proc) time.Duration {
	var d time.Duration
	for _, p := range ps {
		if p != nil {
			d += p.CPU()
		}
	}
	return d
}
