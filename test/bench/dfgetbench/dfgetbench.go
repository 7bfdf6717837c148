// Package dfgetbench measures dfget on this machine against a local origin
// and a real supernode: a cold download through the supernode and a warm
// one (file in the CDN) against `curl -o` from the origin, and stream mode
// (throughput, time to first byte, peak RSS from /proc VmHWM). The
// functions return figures; `make bench` and the tests print them.
package dfgetbench

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/test/bench/cdnbench"
	"github.com/damselfly-p2p/damselfly/test/procmem"
)

// Config says what to run.
type Config struct {
	DfgetBin     string
	SupernodeBin string
	// Size of the test file in bytes (default 1 GiB).
	Size int64
	// WorkDir holds the origin file, homes and outputs (default a temp
	// dir, removed afterwards).
	WorkDir string
	// ProfileDir, if set, receives a CPU profile of each dfget run
	// (cold-<round>.prof, warm-<round>.prof, stream-<round>.prof).
	ProfileDir string
	// Runs is how many rounds to measure (default 1); Figures keep every
	// round and each kind's fastest.
	Runs int
}

// Run is one timed process.
type Run struct {
	Wall time.Duration
	// PeakRSS is the process's maximum resident set size in bytes.
	PeakRSS int64
	// TTFB is the time to the first byte on stdout (stream runs).
	TTFB time.Duration
	// CPU is the process's user plus system time (children excluded).
	CPU time.Duration
	// ServerCPU is the user plus system time of the peer server the dfget
	// spawned, from its start to the dfget's exit (0 for curl).
	ServerCPU time.Duration
	// SupernodeCPU is the supernode's user plus system time during the
	// run (its CDN fill, for a cold one).
	SupernodeCPU time.Duration
	// Sys and SupernodeSys are the system-time parts of CPU and
	// SupernodeCPU: on this VM, what new memory costs shows there.
	Sys, SupernodeSys time.Duration
}

// CPUFloor is the least wall time the run's processes (the dfget, its
// peer server and the supernode) could have taken on cores CPUs, had they
// kept every core busy.
func (r Run) CPUFloor(cores int) time.Duration {
	return (r.CPU + r.ServerCPU + r.SupernodeCPU) / time.Duration(cores)
}

// Figures are the measurements of one Measure call.
type Figures struct {
	Size int64
	// Runs is the number of rounds; the Run fields are each kind's fastest.
	Runs int
	// CDN is the supernode alone bringing the file into its cache (a
	// separate supernode, timed by cdnbench): the floor of a cold download.
	CDN    time.Duration
	Curl   Run
	Cold   Run // dfget, task not yet in the CDN
	Warm   Run // dfget, task in the CDN
	Stream Run // dfget --stream, task in the CDN, alone on its task
	// StreamShared is dfget --stream beside a client still lacking pieces:
	// the supernode wants its pieces shared, so each goes into the peer
	// server's stream cache too.
	StreamShared Run
	// StreamServerRSS is the peak RSS (VmHWM) of the shared stream's peer
	// server, which holds the stream cache.
	StreamServerRSS int64
	// Rounds are every round's runs: the targets are checked on their
	// per-round ratios (see Rounds).
	Rounds Rounds
}

// ColdRatio is cold dfget time over curl time (target <= 1.3).
func (f *Figures) ColdRatio() float64 { return ratio(f.Cold.Wall, f.Curl.Wall) }

// WarmRatio is warm dfget time over curl time (target <= 1.10).
func (f *Figures) WarmRatio() float64 { return ratio(f.Warm.Wall, f.Curl.Wall) }

// StreamVsFile is stream throughput over warm file-mode throughput (target >= 0.8).
func (f *Figures) StreamVsFile() float64 { return ratio(f.Warm.Wall, f.Stream.Wall) }

// SharedVsFile is StreamVsFile for the stream whose pieces are shared.
func (f *Figures) SharedVsFile() float64 { return ratio(f.Warm.Wall, f.StreamShared.Wall) }

// CPUPerGiB is the CPU seconds a run spent per GiB received: the process
// and, for a dfget, its peer server.
func (f *Figures) CPUPerGiB(r Run) float64 {
	return (r.CPU + r.ServerCPU).Seconds() / (float64(f.Size) / (1 << 30))
}

// MBps is a throughput in MiB/s for d.
func (f *Figures) MBps(d time.Duration) float64 { return float64(f.Size) / (1 << 20) / d.Seconds() }

// String is a one-figure-per-line report.
func (f *Figures) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "size %d bytes, %d rounds: best of them, and per-round ratios (median, range)\n", f.Size, f.Runs)
	fmt.Fprintf(&b, "curl -o            %8.3fs %7.1f MiB/s  cpu %.2fs  %.2f cpu-s/GiB\n", f.Curl.Wall.Seconds(), f.MBps(f.Curl.Wall),
		f.Curl.CPU.Seconds(), f.CPUPerGiB(f.Curl))
	fmt.Fprintf(&b, "supernode CDN fill %8.3fs %7.1f MiB/s  (cdnbench; floor of a cold download)\n", f.CDN.Seconds(), f.MBps(f.CDN))
	for _, r := range []struct {
		name     string
		run      Run
		x        float64
		per, cpu Spread
		max      string
	}{{"dfget cold    ", f.Cold, f.ColdRatio(), f.Rounds.Cold(), f.Rounds.CPU(func(r Round) Run { return r.Cold }), "1.30"},
		{"dfget warm    ", f.Warm, f.WarmRatio(), f.Rounds.Warm(), f.Rounds.CPU(func(r Round) Run { return r.Warm }), "1.10"}} {
		fmt.Fprintf(&b, "%s     %8.3fs %7.1f MiB/s  cpu %.2fs + server %.2fs = %.2f cpu-s/GiB (per round %v curl's, target <= 2)  %.2fx curl, per round %v (target <= %s)  peak RSS %d MiB\n",
			r.name, r.run.Wall.Seconds(), f.MBps(r.run.Wall), r.run.CPU.Seconds(), r.run.ServerCPU.Seconds(), f.CPUPerGiB(r.run),
			r.cpu, r.x, r.per, r.max, r.run.PeakRSS>>20)
	}
	fmt.Fprintf(&b, "dfget --stream     %8.3fs %7.1f MiB/s  cpu %.2fs  %.2fx file mode, per round %v (target >= 0.80)  TTFB %v  peak RSS %d MiB\n",
		f.Stream.Wall.Seconds(), f.MBps(f.Stream.Wall), f.Stream.CPU.Seconds(), f.StreamVsFile(), f.Rounds.Stream(),
		f.Stream.TTFB.Round(time.Millisecond), f.Stream.PeakRSS>>20)
	fmt.Fprintf(&b, "dfget --stream, shared %8.3fs %7.1f MiB/s  cpu %.2fs + server %.2fs  %.2fx file mode  TTFB %v  peak RSS %d MiB\n",
		f.StreamShared.Wall.Seconds(), f.MBps(f.StreamShared.Wall), f.StreamShared.CPU.Seconds(), f.StreamShared.ServerCPU.Seconds(),
		f.SharedVsFile(), f.StreamShared.TTFB.Round(time.Millisecond), f.StreamShared.PeakRSS>>20)
	fmt.Fprintf(&b, "shared stream peer server peak RSS %d MiB\n", f.StreamServerRSS>>20)
	return b.String()
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return a.Seconds() / b.Seconds()
}

// Measure starts an origin and a supernode and runs cfg.Runs rounds of
// curl, CDN fill, dfget cold, warm and stream, each output checked against
// the origin.
func Measure(ctx context.Context, cfg Config) (*Figures, error) {
	if cfg.Size <= 0 {
		cfg.Size = 1 << 30
	}
	if cfg.Runs <= 0 {
		cfg.Runs = 1
	}
	b, err := newBed(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer b.close()
	originURL := b.originURL
	f := &Figures{Size: cfg.Size, Runs: cfg.Runs}
	prof := func(name string, round int) []string {
		if cfg.ProfileDir == "" {
			return nil
		}
		return []string{"--cpuprofile", filepath.Join(cfg.ProfileDir, fmt.Sprintf("%s-%d.prof", name, round))}
	}
	// Each round: curl, the CDN alone, a cold dfget (a task URL never used
	// before), a warm one and a stream, each by a new peer (own IP and
	// home). Figures keep every round (Rounds) and each kind's fastest.
	for round := 0; round < cfg.Runs; round++ {
		url := originURL + "?round=" + strconv.Itoa(round)
		r, err := b.curl(ctx, cfg.WorkDir, url)
		if err != nil {
			return nil, err
		}
		f.Curl = best(f.Curl, r)
		rd := Round{Curl: r}
		settle()
		cdn, err := cdnbench.MeasureCDN(ctx, url+"&cdn=1", cfg.SupernodeBin)
		if err != nil {
			return nil, fmt.Errorf("cdn fill: %w", err)
		}
		if f.CDN == 0 || cdn < f.CDN {
			f.CDN = cdn
		}
		rd.CDN = cdn
		for i, step := range []struct {
			name      string
			best, out *Run
		}{{"cold", &f.Cold, &rd.Cold}, {"warm", &f.Warm, &rd.Warm}} {
			r, err := b.dfgetFile(ctx, &cfg, url, fmt.Sprintf("127.0.%d.%d", 10+round, 2+i), prof(step.name, round)...)
			if err != nil {
				return nil, err
			}
			*step.best = best(*step.best, r)
			*step.out = r
		}
		// The cold and warm clients have the whole file: the stream is
		// alone on its task. Then a registered client that never fetches
		// makes the next one share its pieces.
		r, _, err = b.stream(ctx, &cfg, url, fmt.Sprintf("127.0.%d.4", 10+round), prof("stream", round))
		if err != nil {
			return nil, err
		}
		f.Stream = best(f.Stream, r)
		rd.Stream = r
		f.Rounds = append(f.Rounds, rd)
		if err := b.lacking(ctx, url, fmt.Sprintf("bench-lacking-%d", round)); err != nil {
			return nil, err
		}
		r, rss, err := b.stream(ctx, &cfg, url, fmt.Sprintf("127.0.%d.5", 10+round), prof("stream-shared", round))
		if err != nil {
			return nil, err
		}
		if f.StreamShared.Wall == 0 || r.Wall < f.StreamShared.Wall {
			f.StreamServerRSS = rss
		}
		f.StreamShared = best(f.StreamShared, r)
		if err := b.forget(ctx, url); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// stream times a warm dfget --stream of url by a new peer at ip into a
// cheap checking consumer (crc32), and returns its peer server's peak RSS.
func (b *bed) stream(ctx context.Context, cfg *Config, url, ip string, prof []string) (Run, int64, error) {
	home := b.home(cfg.WorkDir, ip)
	h := crc32.NewIEEE()
	r, err := timed(ctx, h, cfg.DfgetBin, append([]string{"-u", url, "--node", b.node, "--ip", ip, "--home", home,
		"--notbs", "--config", "/dev/null", "--alivetime", "60s", "--stream"}, prof...)...)
	if err != nil {
		return r, 0, err
	}
	r.ServerCPU = serverCPU(home)
	rss := serverHWM(home)
	b.retire(home)
	if got := h.Sum32(); got != b.crc {
		return r, 0, fmt.Errorf("stream crc32 %08x, want %08x", got, b.crc)
	}
	return r, rss, nil
}

// lacking registers a client of url that never fetches (the cdn pattern,
// no peer server): to the supernode it lacks every piece.
func (b *bed) lacking(ctx context.Context, url, cid string) error {
	_, err := api.New().Register(ctx, b.node, &types.RegisterRequest{RawURL: url, TaskURL: url, CID: cid, IP: "127.0.0.1",
		HostName: "bench", Path: "/peer/file/" + cid, Version: "bench", SuperNodeIP: "127.0.0.1"})
	if err != nil {
		return fmt.Errorf("register a lacking client: %w", err)
	}
	return nil
}

// best keeps the faster of two runs (a zero Run is no run).
func best(a, b Run) Run {
	if a.Wall == 0 || b.Wall < a.Wall {
		return b
	}
	return a
}

// settle writes back dirty pages so each timed run starts from the same
// state: otherwise one run pays for the previous one's writeback.
func settle() { syscall.Sync() }

// timed runs a command; with stdout non-nil its output is copied there and
// the first byte's arrival is the TTFB.
func timed(ctx context.Context, stdout io.Writer, bin string, args ...string) (Run, error) {
	var r Run
	settle()
	cmd := exec.CommandContext(ctx, bin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	var pipe io.ReadCloser
	var err error
	if stdout != nil {
		if pipe, err = cmd.StdoutPipe(); err != nil {
			return r, err
		}
	} else {
		cmd.Stdout = &errb
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start %s: %w", bin, err)
	}
	stopWatch := procmem.Watch(cmd.Process.Pid)
	if pipe != nil {
		buf := make([]byte, 1<<20)
		first := true
		for {
			n, rerr := pipe.Read(buf)
			if n > 0 {
				if first {
					r.TTFB, first = time.Since(start), false
				}
				stdout.Write(buf[:n])
			}
			if rerr != nil {
				break
			}
		}
	}
	err = cmd.Wait()
	r.Wall = time.Since(start)
	// Not ru_maxrss, which carries this process's own peak (package procmem).
	r.PeakRSS = stopWatch()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.Sys = time.Duration(ru.Stime.Nano())
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, lastLines(errb.String()))
	}
	return r, nil
}

func lastLines(s string) string {
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

func writeRandom(path string, size int64) (string, uint32, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := md5.New()
	c := crc32.NewIEEE()
	r := rand.New(rand.NewPCG(uint64(size), 7))
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		for i := 0; i+8 <= int(n); i += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return "", 0, err
		}
		h.Write(buf[:n])
		c.Write(buf[:n])
		left -= n
	}
	return fmt.Sprintf("%x", h.Sum(nil)), c.Sum32(), nil
}

func checkFile(path, sum string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != sum {
		return fmt.Errorf("%s: md5 %s, want %s", path, got, sum)
	}
	return nil
}

func serveOrigin(path string) (string, func(), error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	})}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String() + "/origin.bin", func() { _ = srv.Close() }, nil
}

// serverHWM is the peak RSS of the peer server under home, 0 if unknown.
func serverHWM(home string) int64 {
	pid := serverPid(home)
	if pid <= 0 {
		return 0
	}
	v, _ := procmem.PeakRSS(pid)
	return v
}

// serverPid is the pid of the peer server a dfget spawned under home, 0
// if unknown.
func serverPid(home string) int {
	b, err := os.ReadFile(filepath.Join(home, "meta", "server.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// serverCPU is the user plus system time so far of the peer server under
// home, 0 if unknown.
func serverCPU(home string) time.Duration { return procmem.CPU(serverPid(home)) }

// killServer ends the peer server a dfget spawned under home and waits
// until it is gone: a server still shutting down writes into home while
// the caller removes it.
func killServer(home string) {
	pid := serverPid(home)
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// RandomFileOrigin writes size random bytes under dir and serves them on
// loopback as a file server does (sendfile from the page cache), so the
// origin costs next to no CPU beside what it is compared with.
func RandomFileOrigin(dir string, size int64) (url string, stop func(), err error) {
	path := filepath.Join(dir, "origin.bin")
	if _, _, err := writeRandom(path, size); err != nil {
		return "", nil, fmt.Errorf("write origin file: %w", err)
	}
	return serveOrigin(path)
}

// CurlTime times `curl -o` of url into dir (the output removed after).
func CurlTime(ctx context.Context, dir, url string) (time.Duration, error) {
	out := filepath.Join(dir, "curl.out")
	defer os.Remove(out)
	r, err := timed(ctx, nil, "curl", "-sS", "-f", "-o", out, url)
	if err != nil {
		return 0, fmt.Errorf("curl: %w", err)
	}
	return r.Wall, nil
}
