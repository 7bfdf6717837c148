package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockPath serialises subnet allocation and the stale sweep between
// concurrent runs (several test packages may build clusters at once).
const lockPath = "/run/lock/damselfly-cluster.lock"

// subnets is the number of /24 networks in 198.18.0.0/15.
const subnets = 512

// bridgeNet is the namespace-mode network: one bridge in the root namespace
// carrying one /24 of 198.18.0.0/15, with the gateway address on the bridge.
type bridgeNet struct {
	pid     int
	index   int // which /24
	bridge  string
	gateway string
}

// ip runs iproute2 with a timeout and returns its combined output on error.
func ip(ctx context.Context, args ...string) error {
	return runTool(ctx, "ip", args...)
}

func runTool(ctx context.Context, tool string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// netnsUnavailable returns why namespace mode cannot run, or "".
func netnsUnavailable(ctx context.Context) string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " (iproute2) not found in PATH"
		}
	}
	probe := runPrefix(os.Getpid()) + "probe"
	if err := ip(ctx, "netns", "add", probe); err != nil {
		return "ip netns add failed: " + err.Error()
	}
	if err := ip(ctx, "netns", "del", probe); err != nil {
		return "ip netns del failed: " + err.Error()
	}
	return ""
}

// subnetAddr is the address .host of /24 number index in 198.18.0.0/15.
func subnetAddr(index, host int) string {
	return net.IPv4(198, byte(18+index/256), byte(index%256), byte(host)).String()
}

func bridgeName(index int) string { return fmt.Sprintf("dmf%db", index) }

func vethName(index, host int) string { return fmt.Sprintf("dmf%dv%d", index, host) }

// ownerAlias marks links with the pid that made them (interface names are
// too short to carry it).
func ownerAlias(pid int) string { return runPrefix(pid)[:len(runPrefix(pid))-1] }

// withLock runs f holding the cross-process harness lock.
func withLock(f func() error) error {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return fmt.Errorf("lock directory: %w", err)
	}
	lf, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock file: %w", err)
	}
	defer lf.Close()
	// Bounded: a holder only allocates a subnet or sweeps, which is quick.
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return fmt.Errorf("lock %s: %w", lockPath, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer func() { _ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) }()
	return f()
}

func newBridgeNet(ctx context.Context, pid int) (*bridgeNet, error) {
	n := &bridgeNet{pid: pid, index: -1}
	err := withLock(func() error {
		used := map[string]bool{}
		entries, _ := os.ReadDir("/sys/class/net")
		for _, e := range entries {
			used[e.Name()] = true
		}
		for i := 0; i < subnets; i++ {
			if !used[bridgeName(i)] {
				n.index = i
				break
			}
		}
		if n.index < 0 {
			return errors.New("no free 198.18.0.0/15 subnet")
		}
		n.bridge = bridgeName(n.index)
		n.gateway = subnetAddr(n.index, 1)
		if err := ip(ctx, "link", "add", "name", n.bridge, "type", "bridge"); err != nil {
			return err
		}
		return ip(ctx, "link", "set", "dev", n.bridge, "alias", ownerAlias(pid))
	})
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	// Bridged frames need no firewalling here; skipping it saves CPU where
	// br_netfilter is loaded. Older kernels lack the option: not fatal.
	_ = ip(ctx, "link", "set", "dev", n.bridge, "type", "bridge", "nf_call_iptables", "0")
	for _, args := range [][]string{
		{"addr", "add", n.gateway + "/24", "dev", n.bridge},
		{"link", "set", "dev", n.bridge, "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			_ = ip(context.Background(), "link", "del", n.bridge)
			return nil, fmt.Errorf("bridge: %w", err)
		}
	}
	return n, nil
}

func (n *bridgeNet) addHost(ctx context.Context, h *Host) error {
	h.ns = runPrefix(n.pid) + strconv.Itoa(n.index) + "-" + h.Name
	h.veth = vethName(n.index, h.index)
	h.IP = subnetAddr(n.index, h.index+2)
	if err := ip(ctx, "netns", "add", h.ns); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "add", "name", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
		{"link", "set", "dev", h.veth, "alias", ownerAlias(n.pid)},
		{"link", "set", "dev", h.veth, "master", n.bridge, "up"},
		{"-n", h.ns, "link", "set", "dev", "lo", "up"},
		{"-n", h.ns, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.ns, "link", "set", "dev", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if h.spec.Uplink > 0 {
		if err := runTool(ctx, "tc", tbfArgs("-n", h.ns, "eth0", h.spec.Uplink)...); err != nil {
			return err
		}
	}
	if h.spec.Downlink > 0 {
		if err := runTool(ctx, "tc", tbfArgs("", "", h.veth, h.spec.Downlink)...); err != nil {
			return err
		}
	}
	return nil
}

// tbfArgs shapes dev's egress with a token bucket. The bucket holds 4 ms of
// traffic (at least 32 KiB, so GSO packets pass at low rates) and the queue
// at most 50 ms.
func tbfArgs(nsFlag, ns, dev string, bitsPerSec int64) []string {
	burst := max(bitsPerSec/8/250, 32<<10)
	args := []string{}
	if nsFlag != "" {
		args = append(args, nsFlag, ns)
	}
	return append(args, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(bitsPerSec, 10)+"bit",
		"burst", strconv.FormatInt(burst, 10), "latency", "50ms")
}

func (n *bridgeNet) close(ctx context.Context, hosts []*Host) error {
	var errs []error
	for _, h := range hosts {
		if h.ns == "" {
			continue
		}
		// Deleting the namespace deletes eth0 and with it the veth pair.
		if err := ip(ctx, "netns", "del", h.ns); err != nil {
			errs = append(errs, err)
		}
		if err := removeLink(ctx, h.veth); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ip(ctx, "link", "del", n.bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// namespacePids lists the processes inside a namespace.
func namespacePids(ctx context.Context, ns string) []int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil && p > 1 && p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids
}

// removeLink waits (bounded) for a veth to go with its namespace, which the
// kernel does asynchronously, and deletes it if it stays.
func removeLink(ctx context.Context, name string) error {
	for range 100 {
		if _, err := os.Stat("/sys/class/net/" + name); err != nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := ip(ctx, "link", "del", name)
	if _, serr := os.Stat("/sys/class/net/" + name); serr != nil {
		return nil
	}
	return err
}
