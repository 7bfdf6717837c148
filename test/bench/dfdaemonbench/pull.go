package dfdaemonbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/report"
	"github.com/damselfly-p2p/damselfly/test/cluster"
	"github.com/damselfly-p2p/damselfly/test/imagetest"
	"github.com/damselfly-p2p/damselfly/test/procmem"
)

// PullConfig is the many-host pull: Hosts hosts, each with its own
// dfdaemon, pull one image of Layers layers of LayerSize bytes at once
// with skopeo through a registries.conf mirror; then the same hosts pull
// it straight from the registry.
type PullConfig struct {
	Hosts, Layers, LayerSize int
	// RegistryRate shapes the registry's uplink (bits/s); it needs
	// namespace mode.
	RegistryRate int64
}

// DefaultPull is the cluster target: 8 hosts, 4 layers of 64 MiB,
// 400 Mbit/s.
func DefaultPull() PullConfig {
	return PullConfig{Hosts: 8, Layers: 4, LayerSize: 64 << 20, RegistryRate: 400 * cluster.Mbit}
}

// Fluid is the time the registry's link needs to send the image once.
func (c PullConfig) Fluid() time.Duration {
	return time.Duration(float64(c.Layers*c.LayerSize*8) / float64(c.RegistryRate) * float64(time.Second))
}

// PullFigures are the times to the last host, and the CPU time skopeo
// spent in each row. ServiceCPU is what the dfdaemons, the supernode and
// the registry spent during the swarm row.
type PullFigures struct {
	Swarm, Direct       time.Duration
	SwarmCPU, DirectCPU time.Duration
	DfdaemonCPU         time.Duration
	SupernodeCPU        time.Duration
	RegistryCPU         time.Duration
}

// SwarmFloor is the least time the swarm row could take on cores CPUs had
// every process of it kept every core busy.
func (f PullFigures) SwarmFloor(cores int) time.Duration {
	return (f.SwarmCPU + f.DfdaemonCPU + f.SupernodeCPU + f.RegistryCPU) / time.Duration(cores)
}

// pullTarget is the bound on the swarm's time to the last host,
// in fluid limits.
const pullTarget = 1.5

// PullSection runs MeasurePull and reports it.
func PullSection(ctx context.Context, cfg PullConfig) report.Section {
	fluid := cfg.Fluid()
	s := report.Section{Title: fmt.Sprintf("dfdaemon: %d hosts pull %d layers of %d MiB at once with skopeo (registry uplink %d Mbit/s, fluid limit %v)",
		cfg.Hosts, cfg.Layers, cfg.LayerSize>>20, cfg.RegistryRate/cluster.Mbit, fluid.Round(time.Millisecond))}
	f, err := MeasurePull(ctx, cfg)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	ratio := func(d time.Duration) float64 { return d.Seconds() / fluid.Seconds() }
	s.Add("through their dfdaemons (swarm)", "last host %v = %.2f x fluid (target <= %.1f x); skopeo CPU %.1fs: %s",
		f.Swarm.Round(time.Millisecond), ratio(f.Swarm), pullTarget, f.SwarmCPU.Seconds(),
		s.Check("dfdaemon pull", ratio(f.Swarm) <= pullTarget))
	n := runtime.NumCPU()
	s.Add("CPU during the swarm row", "skopeo %.1fs, dfdaemons %.1fs, supernode %.1fs, registry %.1fs: at least %v on %d cores = %.2f x fluid",
		f.SwarmCPU.Seconds(), f.DfdaemonCPU.Seconds(), f.SupernodeCPU.Seconds(), f.RegistryCPU.Seconds(),
		f.SwarmFloor(n).Round(time.Millisecond), n, ratio(f.SwarmFloor(n)))
	s.Add("direct from the registry", "last host %v = %.2f x fluid; skopeo CPU %.1fs",
		f.Direct.Round(time.Millisecond), ratio(f.Direct), f.DirectCPU.Seconds())
	return s
}

// MeasurePull runs the setup (network namespaces: the registry's uplink
// is shaped) and takes both rows.
func MeasurePull(ctx context.Context, cfg PullConfig) (PullFigures, error) {
	var f PullFigures
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		return f, fmt.Errorf("skopeo not installed: %w", err)
	}
	registryBin, err := exec.LookPath("docker-registry")
	if err != nil {
		return f, fmt.Errorf("docker-registry not installed: %w", err)
	}
	dfd, err := cluster.Binary("dfdaemon")
	if err != nil {
		return f, err
	}
	c, err := cluster.New(ctx, cluster.Options{Mode: cluster.ModeNetns})
	if err != nil {
		return f, err
	}
	defer c.Close()
	b := &bench{c: c, skopeo: skopeo}
	sn, err := b.startBase(ctx, registryBin, cfg.RegistryRate)
	if err != nil {
		return f, err
	}
	hosts := make([]*cluster.Host, cfg.Hosts)
	mirrors := make([]string, cfg.Hosts)
	dfdaemons := make([]*cluster.Proc, cfg.Hosts)
	for i := range hosts {
		if hosts[i], err = c.AddHost(ctx, cluster.HostSpec{Name: fmt.Sprintf("node%d", i+1)}); err != nil {
			return f, err
		}
		if dfdaemons[i], mirrors[i], err = startDfdaemon(ctx, hosts[i], dfd, b.registry, sn.Node()); err != nil {
			return f, err
		}
	}
	img, err := b.push(ctx, "img:v1", cfg.Layers, cfg.LayerSize, 3, true)
	if err != nil {
		return f, err
	}
	services := func() (d, s, r time.Duration) {
		for _, p := range dfdaemons {
			d += procmem.CPU(p.Pid())
		}
		return d, procmem.CPU(sn.Proc.Pid()), procmem.CPU(b.regProc.Pid())
	}
	d0, s0, r0 := services()
	if f.Swarm, f.SwarmCPU, err = b.pullAll(ctx, hosts, "swarm", mirrors, img); err != nil {
		return f, err
	}
	d1, s1, r1 := services()
	f.DfdaemonCPU, f.SupernodeCPU, f.RegistryCPU = d1-d0, s1-s0, r1-r0
	f.Direct, f.DirectCPU, err = b.pullAll(ctx, hosts, "direct", nil, img)
	return f, err
}

// pullAll runs skopeo on every host at once, through mirrors[i] (nil:
// from the registry), into <host>/<out>, checks every copy's digests and
// returns the time to the last host and skopeo's CPU time.
func (b *bench) pullAll(ctx context.Context, hosts []*cluster.Host, out string, mirrors []string, img *imagetest.Image) (time.Duration, time.Duration, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	cpu := make([]time.Duration, len(hosts))
	for i, h := range hosts {
		wg.Go(func() {
			mirror := ""
			if mirrors != nil {
				mirror = mirrors[i]
			}
			cpu[i], errs[i] = b.pullOne(ctx, h, mirror, out)
		})
	}
	wg.Wait()
	took := time.Since(start)
	var total time.Duration
	for i, h := range hosts {
		if errs[i] == nil {
			errs[i] = imagetest.CheckDir(filepath.Join(h.Dir(), out), img)
		}
		total += cpu[i]
	}
	return took, total, errors.Join(errs...)
}

// pullOne pulls img:v1 on h with skopeo, through mirror ("": from the
// registry), and returns skopeo's CPU time.
func (b *bench) pullOne(ctx context.Context, h *cluster.Host, mirror, out string) (time.Duration, error) {
	ref := b.registry + "/img:v1"
	var extra []string
	if mirror != "" {
		// The image's own registry does not resolve: only the mirror serves.
		conf := filepath.Join(h.Dir(), "registries.conf")
		if err := os.WriteFile(conf, imagetest.MirrorConf("primary.invalid", mirror), 0o644); err != nil {
			return 0, err
		}
		ref, extra = "primary.invalid/img:v1", []string{"--registries-conf", conf}
	}
	args := append([]string{"--insecure-policy", "copy", "--src-tls-verify=false"}, extra...)
	args = append(args, "docker://"+ref, "dir:"+filepath.Join(h.Dir(), out))
	p, err := h.Start(ctx, cluster.Exec{Label: h.NextLabel("skopeo"), Path: b.skopeo, Args: args, Env: []string{"HOME=" + h.Dir()}})
	if err != nil {
		return 0, err
	}
	err = p.Wait()
	return p.CPU(), err
}
