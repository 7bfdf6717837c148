package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/ring"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/test/cluster/synth"
)

// MultiSpec is several supernodes, each file downloaded at once by its own
// peers: the layout of a supernode cluster's tests and benchmarks.
type MultiSpec struct {
	Supernodes   int
	Files        int
	PeersPerFile int
	Size         int64
	// OriginRate shapes the origin's uplink, bits/s.
	OriginRate int64
	// Cluster starts every supernode with --cluster naming all of them,
	// or, with ClusterList, the list it returns for supernode i.
	Cluster     bool
	ClusterList func(i int, all []string) []string
	// SupernodeArgs are extra supernode flags.
	SupernodeArgs []string
}

// Multi is a running MultiSpec: Peers[f][p] is peer p of file f.
type Multi struct {
	C          *Cluster
	Spec       MultiSpec
	Origin     *Origin
	Supernodes []*Supernode
	Peers      [][]*Host
}

// StartMulti adds the origin, the supernodes and the peers' hosts and
// starts the servers; with Cluster it waits until every supernode sees
// every member alive.
func (c *Cluster) StartMulti(ctx context.Context, spec MultiSpec) (*Multi, error) {
	m := &Multi{C: c, Spec: spec}
	oh, err := c.AddHost(ctx, HostSpec{Name: "origin", Uplink: spec.OriginRate})
	if err != nil {
		return nil, err
	}
	if m.Origin, err = c.StartOrigin(ctx, oh); err != nil {
		return nil, err
	}
	snHosts := make([]*Host, spec.Supernodes)
	for i := range snHosts {
		if snHosts[i], err = c.AddHost(ctx, HostSpec{Name: fmt.Sprintf("sn%d", i+1)}); err != nil {
			return nil, err
		}
	}
	if err := m.startSupernodes(ctx, snHosts); err != nil {
		return nil, err
	}
	m.Peers = make([][]*Host, spec.Files)
	for f := range m.Peers {
		m.Peers[f] = make([]*Host, spec.PeersPerFile)
		for p := range m.Peers[f] {
			if m.Peers[f][p], err = c.AddHost(ctx, HostSpec{Name: fmt.Sprintf("f%dp%d", f+1, p+1)}); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Multi) startSupernodes(ctx context.Context, hosts []*Host) error {
	if m.Spec.Cluster && m.C.net == nil {
		// A loopback host's port is only known once its supernode runs.
		return errors.New("a supernode cluster needs network namespaces")
	}
	var list []string
	for _, h := range hosts {
		port, err := h.Port(8002)
		if err != nil {
			return err
		}
		list = append(list, h.Addr(port))
	}
	m.Supernodes = make([]*Supernode, len(hosts))
	for i, h := range hosts {
		args := append([]string(nil), m.Spec.SupernodeArgs...)
		if m.Spec.Cluster {
			l := list
			if m.Spec.ClusterList != nil {
				l = m.Spec.ClusterList(i, list)
			}
			args = append(args, "--cluster", strings.Join(l, ","))
		}
		var err error
		if m.Supernodes[i], err = m.C.StartSupernode(ctx, h, args...); err != nil {
			return err
		}
	}
	if m.Spec.Cluster && m.Spec.ClusterList == nil {
		return m.WaitClusterAlive(ctx, len(hosts), 20*time.Second)
	}
	return nil
}

// WaitClusterAlive waits until every running supernode's /api/v1/cluster
// shows want members, all alive.
func (m *Multi) WaitClusterAlive(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, s := range m.Supernodes {
		if s.Proc.Exited() {
			continue
		}
		for {
			info, err := s.ClusterInfo(ctx)
			alive := 0
			for _, mb := range info.Members {
				if mb.Alive {
					alive++
				}
			}
			if err == nil && alive == want && len(info.Members) == want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("supernode %s sees %d of %d members alive (%v): %+v", s.Node(), alive, want, err, info.Members)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// ClusterInfo fetches the supernode's /api/v1/cluster.
func (s *Supernode) ClusterInfo(ctx context.Context) (types.ClusterInfo, error) {
	var info types.ClusterInfo
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Node()+"/api/v1/cluster", nil)
	resp, err := httpClient().Do(req)
	if err != nil {
		return info, fmt.Errorf("cluster info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return info, fmt.Errorf("cluster info: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return info, fmt.Errorf("cluster info: %w", err)
	}
	return info, nil
}

// Nodes are the supernodes' ip:port values.
func (m *Multi) Nodes() []string {
	out := make([]string, len(m.Supernodes))
	for i, s := range m.Supernodes {
		out[i] = s.Node()
	}
	return out
}

// Home is the index of the supernode that is home to url's task when all
// supernodes are up (weights 1), as dfget and the supernodes compute it.
func (m *Multi) Home(url string) int {
	id, err := taskid.Registration{RawURL: url}.ID()
	if err != nil {
		panic(err) // a synthetic URL always has an ID
	}
	members := make([]ring.Member, len(m.Supernodes))
	for i, s := range m.Supernodes {
		members[i] = ring.Member{ID: s.Node(), Weight: 1}
	}
	return ring.Order(id, members)[0]
}

// Round is one download of every file by its peers.
type Round struct {
	// Names[f] is file f's name; URLs[f] its address.
	Names, URLs []string
	// Nodes is the --node value of peer p of file f.
	Nodes func(f, p int) []string
	// DfgetArgs are extra dfget flags.
	DfgetArgs []string
	// During runs while the downloads run; its error fails the round.
	During func(ctx context.Context) error
}

// RoundResult is what a round measured.
type RoundResult struct {
	Wall time.Duration
	// OriginBytes[f] is what the origin served of file f.
	OriginBytes []int64
	// Errors lists peers that failed or wrote wrong bytes.
	Errors []error
	// Slowest is the longest single download.
	Slowest time.Duration
}

// NewRound names one file per spec file, unique to this round.
func (m *Multi) NewRound(tag string) *Round {
	r := &Round{}
	for f := range m.Spec.Files {
		name := fmt.Sprintf("%s-%d-%d.bin", tag, f+1, time.Now().UnixNano())
		r.Names = append(r.Names, name)
		r.URLs = append(r.URLs, m.Origin.URL(name, m.Spec.Size))
	}
	return r
}

// Run starts every peer's dfget at once, waits for all, and checks every
// output byte; outputs are removed afterwards.
func (m *Multi) Run(ctx context.Context, r *Round) (*RoundResult, error) {
	type dl struct {
		f, p int
		out  string
		proc *Proc
	}
	var dls []dl
	start := time.Now()
	for f := range r.Names {
		for p, h := range m.Peers[f] {
			out := filepath.Join(h.Dir(), "out", r.Names[f])
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return nil, err
			}
			proc, err := h.StartDfget(ctx, Dfget{URL: r.URLs[f], Output: out, Nodes: r.Nodes(f, p), Extra: r.DfgetArgs})
			if err != nil {
				return nil, err
			}
			dls = append(dls, dl{f, p, out, proc})
		}
	}
	var duringErr error
	if r.During != nil {
		duringErr = r.During(ctx)
	}
	res := &RoundResult{OriginBytes: make([]int64, len(r.Names))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // verification is CPU-bound
	for _, d := range dls {
		werr := d.proc.Wait()
		res.Slowest = max(res.Slowest, d.proc.Duration())
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			err := werr
			if err == nil {
				err = VerifyOutput(d.out, r.Names[d.f], m.Spec.Size)
			}
			_ = os.Remove(d.out)
			if err != nil {
				mu.Lock()
				res.Errors = append(res.Errors, fmt.Errorf("file %d peer %d: %w", d.f+1, d.p+1, err))
				mu.Unlock()
			}
		}()
	}
	res.Wall = time.Since(start)
	wg.Wait()
	for f, name := range r.Names {
		n, err := m.Origin.BytesServed(ctx, name, m.Spec.Size)
		if err != nil {
			return nil, err
		}
		res.OriginBytes[f] = n
	}
	return res, duringErr
}

// VerifyOutput checks a downloaded synthetic file.
func VerifyOutput(path, name string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	defer f.Close()
	return synth.Verify(f, name, size)
}

// SetHostsFile gives every host's namespace an /etc/hosts (ip netns exec
// mounts /etc/netns/<namespace>/hosts over it) in which name has all the
// addresses given: DNS membership with several A records, without a DNS
// server. Namespace mode only; Close removes the files.
func (c *Cluster) SetHostsFile(name string, ips []string) error {
	if c.net == nil {
		return errors.New("hosts files need network namespaces")
	}
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "%s %s\n", ip, name)
	}
	for _, h := range c.Hosts() {
		dir := filepath.Join("/etc/netns", h.ns)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("hosts file: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("hosts file: %w", err)
		}
	}
	return nil
}

// removeHostsFiles removes what SetHostsFile wrote.
func removeHostsFiles(hosts []*Host) error {
	var errs []error
	for _, h := range hosts {
		if h.ns == "" {
			continue
		}
		if err := os.RemoveAll(filepath.Join("/etc/netns", h.ns)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
