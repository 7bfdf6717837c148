package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Host is one machine of the cluster: a namespace with one interface, or a
// loopback address.
type Host struct {
	c     *Cluster
	Name  string
	IP    string
	spec  HostSpec
	index int
	dir   string
	ns    string // namespace name; empty in loopback mode
	veth  string // bridge-side end of the host's veth; empty in loopback mode

	mu     sync.Mutex
	labels map[string]int
}

// NextLabel returns base-1, base-2, ...: unique process labels (and so log
// file names) on this host.
func (h *Host) NextLabel(base string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.labels == nil {
		h.labels = map[string]int{}
	}
	h.labels[base]++
	return base + "-" + strconv.Itoa(h.labels[base])
}

// Dir is the host's private directory (homes, downloads) in the run
// directory.
func (h *Host) Dir() string { return h.dir }

// Namespace is the network namespace name, empty in loopback mode.
func (h *Host) Namespace() string { return h.ns }

// Spec is what the host was created with.
func (h *Host) Spec() HostSpec { return h.spec }

// Port returns a port that a server on this host can listen on: def in
// namespace mode, where every host has its own port space, and a free port
// in loopback mode, where hosts share one.
func (h *Host) Port(def int) (int, error) {
	if h.ns != "" {
		return def, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(h.IP, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port on %s: %w", h.IP, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Addr is ip:port on this host.
func (h *Host) Addr(port int) string { return net.JoinHostPort(h.IP, strconv.Itoa(port)) }

// Counters are a host's interface byte counters, link-layer bytes included.
type Counters struct {
	Sent     int64 // bytes the host put on the wire (its uplink)
	Received int64 // bytes delivered to the host (its downlink)
}

// Sub is c minus an earlier snapshot.
func (c Counters) Sub(before Counters) Counters {
	return Counters{Sent: c.Sent - before.Sent, Received: c.Received - before.Received}
}

// Counters reads the host's interface counters from the bridge side of its
// veth: what the bridge received from the host is what the host sent.
func (h *Host) Counters() (Counters, error) {
	if h.veth == "" {
		return Counters{}, ErrNoCounters
	}
	read := func(name string) (int64, error) {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", h.veth, "statistics", name))
		if err != nil {
			return 0, fmt.Errorf("host %s counters: %w", h.Name, err)
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	rx, err := read("rx_bytes")
	if err != nil {
		return Counters{}, err
	}
	tx, err := read("tx_bytes")
	if err != nil {
		return Counters{}, err
	}
	return Counters{Sent: rx, Received: tx}, nil
}

// wrap turns a command into one that runs inside the host's namespace.
func (h *Host) wrap(path string, args []string) (string, []string) {
	if h.ns == "" {
		return path, args
	}
	return "ip", append([]string{"netns", "exec", h.ns, path}, args...)
}

// Start runs a program on the host; see Exec.
func (h *Host) Start(ctx context.Context, e Exec) (*Proc, error) {
	return startProc(ctx, h, e)
}

// Run runs a program on the host and waits for it to exit.
func (h *Host) Run(ctx context.Context, e Exec) (*Proc, error) {
	p, err := startProc(ctx, h, e)
	if err != nil {
		return nil, err
	}
	return p, p.Wait()
}
