// Package cluster brings up a small data centre on one machine for
// end-to-end tests, the demo and the benchmarks: an origin host, supernode
// hosts and peer hosts, each in its own network namespace with an address in
// 198.18.0.0/15, all on one bridge, with tc shaping each host's links. It
// starts real processes in those hosts, collects their logs, counts the bytes
// each host sends and receives, and tears everything down again, including
// detached processes (the dfget peer servers) and resources left by a run
// that was killed.
//
// Where network namespaces are not available (not root, no iproute2, or
// `ip netns add` fails) the same API runs in loopback mode: every host is a
// distinct 127.x.y.z address, nothing is shaped and there are no interface
// counters.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Mode says how hosts are isolated.
type Mode int

const (
	// ModeAuto uses namespaces when they work, loopback otherwise.
	ModeAuto Mode = iota
	// ModeNetns requires network namespaces; New fails without them.
	ModeNetns
	// ModeLoopback puts every host on its own loopback address.
	ModeLoopback
)

func (m Mode) String() string {
	switch m {
	case ModeNetns:
		return "netns"
	case ModeLoopback:
		return "loopback"
	default:
		return "auto"
	}
}

// ErrNoCounters is returned by Host.Counters in loopback mode.
var ErrNoCounters = errors.New("interface counters need network namespaces (loopback mode)")

// Options configure a cluster.
type Options struct {
	Mode Mode
	// BaseDir holds the run directory (logs, homes, downloads);
	// os.TempDir() when empty.
	BaseDir string
	// KeepDir keeps the run directory after Close.
	KeepDir bool
}

// HostSpec describes one host. Rates are in bits per second; 0 means
// unshaped. Uplink is what the host sends (shaped on its own interface),
// Downlink what it receives (shaped on the bridge side).
type HostSpec struct {
	Name     string
	Uplink   int64
	Downlink int64
}

// Mbit is one megabit per second, for HostSpec rates.
const Mbit = 1_000_000

// Cluster is a set of hosts and the processes running on them.
type Cluster struct {
	mode     Mode
	reason   string // why namespaces are not used, in loopback mode
	pid      int
	dir      string
	keepDir  bool
	ctx      context.Context
	cancel   context.CancelFunc
	net      *bridgeNet // nil in loopback mode
	loopBase [3]byte    // 127.a.b in loopback mode

	mu        sync.Mutex
	originBin string
	hosts     []*Host
	procs     []*Proc
	closed    bool
}

// New creates an empty cluster. In namespace mode it first removes
// namespaces, links, processes and run directories left by runs whose
// process is gone.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	base := opts.BaseDir
	if base == "" {
		base = os.TempDir()
	}
	pid := os.Getpid()
	c := &Cluster{mode: opts.Mode, pid: pid, keepDir: opts.KeepDir}
	if c.mode != ModeLoopback {
		if reason := netnsUnavailable(ctx); reason != "" {
			if c.mode == ModeNetns {
				return nil, fmt.Errorf("network namespaces unavailable: %s", reason)
			}
			c.reason = reason
			c.mode = ModeLoopback
		} else {
			c.mode = ModeNetns
		}
	}
	if c.mode == ModeNetns {
		sweepStale(ctx, base)
	}
	dir, err := os.MkdirTemp(base, runPrefix(pid)+"*")
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	c.dir = dir
	if err := os.MkdirAll(c.LogDir(), 0o755); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.mode == ModeNetns {
		n, err := newBridgeNet(ctx, pid)
		if err != nil {
			c.cancel()
			_ = os.RemoveAll(dir)
			return nil, err
		}
		c.net = n
	} else {
		c.loopBase = [3]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256))}
	}
	return c, nil
}

// runPrefix names everything a run creates, so a later run can tell whose
// it was and whether its owner is still alive.
func runPrefix(pid int) string { return "dmf" + strconv.Itoa(pid) + "-" }

// Mode is the isolation in use (never ModeAuto).
func (c *Cluster) Mode() Mode { return c.mode }

// Reason says why namespaces are not used; empty in namespace mode.
func (c *Cluster) Reason() string { return c.reason }

// Dir is the run directory.
func (c *Cluster) Dir() string { return c.dir }

// LogDir holds one log file per started process.
func (c *Cluster) LogDir() string { return filepath.Join(c.dir, "logs") }

// BridgeIP is the root namespace's address on the bridge, or 127.0.0.1 in
// loopback mode: where the harness process itself is seen from the hosts.
func (c *Cluster) BridgeIP() string {
	if c.net == nil {
		return "127.0.0.1"
	}
	return c.net.gateway
}

// Hosts returns the hosts in the order they were added.
func (c *Cluster) Hosts() []*Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Host(nil), c.hosts...)
}

// AddHost creates a host: a namespace with its veth on the bridge and its
// shaping, or a loopback address.
func (c *Cluster) AddHost(ctx context.Context, spec HostSpec) (*Host, error) {
	if spec.Name == "" || !validName(spec.Name) {
		return nil, fmt.Errorf("host name %q: want 1-16 letters, digits or '-'", spec.Name)
	}
	if spec.Uplink < 0 || spec.Downlink < 0 {
		return nil, fmt.Errorf("host %s: negative rate", spec.Name)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("cluster is closed")
	}
	for _, h := range c.hosts {
		if h.Name == spec.Name {
			c.mu.Unlock()
			return nil, fmt.Errorf("host %s exists", spec.Name)
		}
	}
	idx := len(c.hosts)
	if idx >= maxHosts {
		c.mu.Unlock()
		return nil, fmt.Errorf("at most %d hosts", maxHosts)
	}
	h := &Host{c: c, Name: spec.Name, spec: spec, index: idx, dir: filepath.Join(c.dir, "hosts", spec.Name)}
	c.hosts = append(c.hosts, h)
	c.mu.Unlock()
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return nil, fmt.Errorf("host %s: %w", spec.Name, err)
	}
	if c.net == nil {
		h.IP = net.IPv4(c.loopBase[0], c.loopBase[1], c.loopBase[2], byte(idx+2)).String()
		return h, nil
	}
	if err := c.net.addHost(ctx, h); err != nil {
		return nil, fmt.Errorf("host %s: %w", spec.Name, err)
	}
	return h, nil
}

// maxHosts keeps interface names within 15 characters and addresses within
// one /24.
const maxHosts = 99

func validName(s string) bool {
	if len(s) > 16 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Close stops every process (tracked ones first, then anything left in the
// namespaces or still naming the run directory, such as detached peer
// servers), deletes namespaces and links, and removes the run directory
// unless KeepDir. It is safe to call more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	procs := append([]*Proc(nil), c.procs...)
	hosts := append([]*Host(nil), c.hosts...)
	c.mu.Unlock()

	var errs []error
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(3 * time.Second) }()
	}
	wg.Wait()
	c.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.net != nil {
		for _, h := range hosts {
			if h.ns != "" {
				killPids(namespacePids(ctx, h.ns))
			}
		}
	}
	// Twice: a process in the middle of an exec can show an empty
	// cmdline, so one pass can miss it (a detached process survived
	// teardown once in TestLoopbackCluster under the load of make test).
	for range 2 {
		killPids(pidsReferencing(c.dir))
		time.Sleep(20 * time.Millisecond)
	}
	if c.net != nil {
		if err := c.net.close(ctx, hosts); err != nil {
			errs = append(errs, err)
		}
		if err := removeHostsFiles(hosts); err != nil {
			errs = append(errs, fmt.Errorf("remove hosts files: %w", err))
		}
	}
	if !c.keepDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove run directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) track(p *Proc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cluster is closed")
	}
	c.procs = append(c.procs, p)
	return nil
}

// DumpLogs writes the last maxBytes of every log file under the run
// directory (process logs and the programs' own logs) to w.
func (c *Cluster) DumpLogs(w io.Writer, maxBytes int64) {
	_ = filepath.WalkDir(c.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".log" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(c.dir, path)
		fmt.Fprintf(w, "===== %s (%d bytes) =====\n", rel, fi.Size())
		if fi.Size() > maxBytes {
			_, _ = f.Seek(fi.Size()-maxBytes, io.SeekStart)
			fmt.Fprintf(w, "[... %d bytes skipped ...]\n", fi.Size()-maxBytes)
		}
		_, _ = io.Copy(w, f)
		fmt.Fprintln(w)
		return nil
	})
}
