// Package dfdaemonbench measures dfdaemon's registry mirror: the time to
// first byte of a large layer through a cold swarm against curl's from the
// registry, and dfdaemon's peak RSS while it streams several layers at
// once. It runs the real docker-registry, supernode and dfdaemon on a
// cluster (loopback by default: nothing shaped).
package dfdaemonbench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/test/bench/report"
	"github.com/damselfly-p2p/damselfly/test/cluster"
	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// Config is one measurement.
type Config struct {
	Mode cluster.Mode
	// RegistryRate shapes the registry's uplink (bits/s; namespace mode
	// only): the one link the whole cold path depends on.
	RegistryRate int64
	// LayerSize is the layer whose first byte is timed.
	LayerSize int
	// Layers of RSSLayerSize are streamed at once for the RSS figure.
	Layers       int
	RSSLayerSize int
}

// Default is the configuration: a 256 MiB layer, 8 layers of
// 64 MiB at once.
func Default() Config {
	return Config{RegistryRate: 400 * cluster.Mbit, LayerSize: 256 << 20, Layers: 8, RSSLayerSize: 64 << 20}
}

// Figures are the results.
type Figures struct {
	CurlTTFB, CurlTotal time.Duration
	// DfdaemonTTFB is through a cold swarm (the CDN fills on this
	// request), WarmTTFB the same layer again (the CDN has it).
	DfdaemonTTFB, WarmTTFB time.Duration
	// PieceTime is one 4 MiB piece at curl's throughput.
	PieceTime time.Duration
	// CurlFirstPiece is curl's time to the end of the layer's first 4 MiB
	// (a Range request): its TTFB plus the first piece as measured on a
	// new connection, where PieceTime is derived from the whole layer.
	CurlFirstPiece time.Duration
	PeakRSS        int64
	Streamed       int64
}

// TTFBTarget is the target: 2x curl's time to first byte plus one
// piece time.
func (f Figures) TTFBTarget() time.Duration { return 2*f.CurlTTFB + f.PieceTime }

// pieceSize is the supernode's piece size for these layers.
const pieceSize = 4 << 20

// Section runs Measure and reports it.
func Section(ctx context.Context, cfg Config) report.Section {
	s := report.Section{Title: fmt.Sprintf("dfdaemon registry mirror (%d MiB layer TTFB; %d layers of %d MiB at once; registry uplink %d Mbit/s)",
		cfg.LayerSize>>20, cfg.Layers, cfg.RSSLayerSize>>20, cfg.RegistryRate/cluster.Mbit)}
	f, err := Measure(ctx, cfg)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Add("curl from the registry", "TTFB %v, whole layer %v", f.CurlTTFB.Round(time.Millisecond), f.CurlTotal.Round(time.Millisecond))
	s.Add("dfdaemon, cold swarm", "TTFB %v; target <= 2 x curl TTFB + one piece (%v) = %v: %s",
		f.DfdaemonTTFB.Round(time.Millisecond), f.PieceTime.Round(time.Millisecond), f.TTFBTarget().Round(time.Millisecond),
		s.Check("dfdaemon TTFB", f.DfdaemonTTFB <= f.TTFBTarget()))
	s.Add("curl, the layer's first piece only (Range: bytes=0-4194303)", "%v: 2 x curl TTFB + this first piece's own time = %v (not checked)",
		f.CurlFirstPiece.Round(time.Millisecond), (f.CurlTTFB + f.CurlFirstPiece).Round(time.Millisecond))
	s.Add("dfdaemon, same layer again (in the CDN)", "TTFB %v", f.WarmTTFB.Round(time.Millisecond))
	bound, pieces := rssBound(cfg.Layers)
	s.Add(fmt.Sprintf("dfdaemon peak RSS, %d layers at once", cfg.Layers), "%d MiB (%d MiB streamed); bound %d x (%s) pieces of 4 MiB = %d MiB: %s",
		f.PeakRSS>>20, f.Streamed>>20, cfg.Layers, pieces, bound>>20, s.Check("dfdaemon peak RSS", f.PeakRSS <= bound))
	return s
}

// rssBound is the piece memory of layers streams at once (docs/dfdaemon.md,
// "Bounded memory"), and its per-stream sum as printed: each stream's
// window and the pieces being fetched, and the peer server's ring of twice
// the window (evicted pieces still being sent keep their slots).
func rssBound(layers int) (int64, string) {
	const window, queue = config.DefaultWindowSize, config.DefaultClientQueue
	const ring = 2 * window
	return int64(layers) * (window + queue + ring) * pieceSize, fmt.Sprintf("%d+%d+%d", window, queue, ring)
}

// bench is a running setup: registry, supernode, dfdaemon, client host.
type bench struct {
	c        *cluster.Cluster
	registry string
	regProc  *cluster.Proc // the registry's process
	client   *cluster.Host
	dfdaemon *cluster.Proc
	mirror   string
	skopeo   string
}

// Measure runs the setup and takes the figures.
func Measure(ctx context.Context, cfg Config) (Figures, error) {
	var f Figures
	b, err := start(ctx, cfg.Mode, cfg.RegistryRate)
	if err != nil {
		return f, err
	}
	defer b.c.Close()
	big, err := b.push(ctx, "big/layer:v1", 1, cfg.LayerSize, 1, false)
	if err != nil {
		return f, err
	}
	if f.CurlTTFB, f.CurlTotal, err = b.curl(ctx, "http://"+b.registry+"/v2/big/layer/blobs/"+big.Layers[0]); err != nil {
		return f, err
	}
	f.PieceTime = time.Duration(float64(f.CurlTotal) * pieceSize / float64(cfg.LayerSize))
	if _, f.CurlFirstPiece, err = b.curl(ctx, "http://"+b.registry+"/v2/big/layer/blobs/"+big.Layers[0], "-r", fmt.Sprintf("0-%d", pieceSize-1)); err != nil {
		return f, err
	}
	if f.DfdaemonTTFB, _, err = b.curl(ctx, "http://"+b.mirror+"/v2/big/layer/blobs/"+big.Layers[0]); err != nil {
		return f, err
	}
	if f.WarmTTFB, _, err = b.curl(ctx, "http://"+b.mirror+"/v2/big/layer/blobs/"+big.Layers[0]); err != nil {
		return f, err
	}
	many, err := b.push(ctx, "many/layers:v1", cfg.Layers, cfg.RSSLayerSize, 2, false)
	if err != nil {
		return f, err
	}
	if f.Streamed, err = b.getAll(ctx, "many/layers", many); err != nil {
		return f, err
	}
	f.PeakRSS, err = b.dfdaemon.PeakRSS()
	return f, err
}

func start(ctx context.Context, mode cluster.Mode, rate int64) (*bench, error) {
	bins := map[string]string{}
	for _, name := range []string{"docker-registry", "skopeo", "curl"} {
		p, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("%s not installed: %w", name, err)
		}
		bins[name] = p
	}
	dfd, err := cluster.Binary("dfdaemon")
	if err != nil {
		return nil, err
	}
	c, err := cluster.New(ctx, cluster.Options{Mode: mode})
	if err != nil {
		return nil, err
	}
	b := &bench{c: c, skopeo: bins["skopeo"]}
	if err := b.startHosts(ctx, bins["docker-registry"], dfd, rate); err != nil {
		c.Close()
		return nil, err
	}
	return b, nil
}

func (b *bench) startHosts(ctx context.Context, registryBin, dfdaemonBin string, rate int64) error {
	sn, err := b.startBase(ctx, registryBin, rate)
	if err != nil {
		return err
	}
	ch, err := b.c.AddHost(ctx, cluster.HostSpec{Name: "client"})
	if err != nil {
		return err
	}
	b.client = ch
	b.dfdaemon, b.mirror, err = startDfdaemon(ctx, ch, dfdaemonBin, b.registry, sn.Node())
	return err
}

// startBase starts the registry, its uplink shaped to rate, and the
// supernode.
func (b *bench) startBase(ctx context.Context, registryBin string, rate int64) (*cluster.Supernode, error) {
	rh, err := b.c.AddHost(ctx, cluster.HostSpec{Name: "registry", Uplink: rate})
	if err != nil {
		return nil, err
	}
	sh, err := b.c.AddHost(ctx, cluster.HostSpec{Name: "supernode"})
	if err != nil {
		return nil, err
	}
	port, err := rh.Port(5000)
	if err != nil {
		return nil, err
	}
	b.registry = rh.Addr(port)
	cfg := filepath.Join(rh.Dir(), "registry.yml")
	if err := os.WriteFile(cfg, imagetest.RegistryConfig(filepath.Join(rh.Dir(), "storage"), b.registry), 0o644); err != nil {
		return nil, err
	}
	reg, err := rh.Start(ctx, cluster.Exec{Label: "registry", Path: registryBin, Args: []string{"serve", cfg}})
	if err != nil {
		return nil, err
	}
	b.regProc = reg
	if err := cluster.WaitHTTP(ctx, "http://"+b.registry+"/v2/", "{}", 15*time.Second, reg); err != nil {
		return nil, err
	}
	return b.c.StartSupernode(ctx, sh)
}

// startDfdaemon runs a dfdaemon on h mirroring registry through node and
// returns it with its address.
func startDfdaemon(ctx context.Context, h *cluster.Host, bin, registry, node string) (*cluster.Proc, string, error) {
	mport, err := h.Port(65001)
	if err != nil {
		return nil, "", err
	}
	mirror := h.Addr(mport)
	p, err := h.Start(ctx, cluster.Exec{Label: h.NextLabel("dfdaemon"), Path: bin, Args: []string{"--config", "/dev/null",
		"--port", strconv.Itoa(mport), "--registry", "http://" + registry, "--node", node, "--ratelimit", "0",
		"--workHome", filepath.Join(h.Dir(), "dfdaemon-home")}})
	if err != nil {
		return nil, "", err
	}
	return p, mirror, cluster.WaitHTTP(ctx, "http://"+mirror+"/_ping", "OK", 15*time.Second, p)
}

// push writes an image of n random layers of size bytes and pushes it;
// the returned image keeps the blobs' bytes with keep, else only their
// digests.
func (b *bench) push(ctx context.Context, ref string, n, size int, seed byte, keep bool) (*imagetest.Image, error) {
	r := rand.NewChaCha8([32]byte{'b', seed})
	layers := make([][]byte, n)
	for i := range layers {
		layers[i] = make([]byte, size)
		_, _ = r.Read(layers[i])
	}
	// No ":" in the path: skopeo reads "oci:DIR:REF".
	dir := filepath.Join(b.c.Dir(), "oci-"+strings.NewReplacer("/", "-", ":", "-").Replace(ref))
	img, err := imagetest.WriteOCI(dir, layers)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if !keep {
		for d := range img.Blobs {
			img.Blobs[d] = nil // only the digests are needed from here on
		}
	}
	out, err := exec.CommandContext(ctx, b.skopeo, "--insecure-policy", "copy", "--dest-tls-verify=false", "oci:"+dir,
		"docker://"+b.registry+"/"+ref).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("push %s: %w: %s", ref, err, out)
	}
	return img, nil
}

// curl fetches url on the client host, with extra arguments, and returns
// curl's time to first byte and total time.
func (b *bench) curl(ctx context.Context, url string, extra ...string) (ttfb, total time.Duration, err error) {
	var out bytes.Buffer
	p, err := b.client.Start(ctx, cluster.Exec{Label: b.client.NextLabel("curl"), Path: "curl", Stdout: &out,
		Args: append([]string{"-sS", "-f", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total}", url}, extra...)})
	if err != nil {
		return 0, 0, err
	}
	if err := p.Wait(); err != nil {
		return 0, 0, err
	}
	var a, t float64
	if _, err := fmt.Sscan(out.String(), &a, &t); err != nil {
		return 0, 0, fmt.Errorf("curl -w output %q: %w", out.String(), err)
	}
	return time.Duration(a * float64(time.Second)), time.Duration(t * float64(time.Second)), nil
}

// getAll streams every layer of img through the dfdaemon at once,
// checking each against its digest, and returns the bytes read.
func (b *bench) getAll(ctx context.Context, repo string, img *imagetest.Image) (int64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var firstErr error
	for _, l := range img.Layers {
		wg.Go(func() {
			n, err := b.getOne(ctx, "http://"+b.mirror+"/v2/"+repo+"/blobs/"+l, l)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return total, firstErr
}

func (b *bench) getOne(ctx context.Context, url, digest string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", url, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return n, fmt.Errorf("GET %s: digest %s", url, got)
	}
	return n, nil
}
