package swarm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/test/cluster"
)

// How the peers of a cluster run pick their supernode.
const (
	// OrderHome: every peer has the whole list and dfget orders it by
	// rendezvous hashing of the task (the default).
	OrderHome = "home"
	// OrderRandom: the whole list in Dragonfly 1.x's weighted random
	// order (dfget --node-order random).
	OrderRandom = "random"
	// OrderOne: supernodes started with --cluster, every peer given one
	// of them at random, as Dragonfly 1.x dfgets may be.
	OrderOne = "one"
	// OrderShuffled: the whole list, in a different order for every peer;
	// rendezvous hashing makes the order given irrelevant.
	OrderShuffled = "shuffled"
	// OrderDNS: every peer given one name that resolves to all the
	// supernodes (each host's /etc/hosts), as a headless service would.
	OrderDNS = "dns"
	// OrderHomeKilled: --cluster and the whole list, and the home of the
	// first file killed with SIGKILL once its CDN has read a third of it.
	OrderHomeKilled = "home-killed"
)

// dnsName is the name OrderDNS gives the peers.
const dnsName = "supernodes.bench"

// ClusterConfig is one supernode-cluster configuration: several files, each
// downloaded at once by its own peers.
type ClusterConfig struct {
	Supernodes, Files, PeersPerFile int
	Size                            int64
	OriginRate                      int64 // bits/s
	Order                           string
	Mode                            cluster.Mode
	BaseDir                         string
	DfgetArgs, SupernodeArgs        []string
	Logf                            func(format string, args ...any)
}

// ClusterResult is one cluster configuration's outcome.
type ClusterResult struct {
	Config ClusterConfig `json:"-"`
	Mode   string        `json:"mode"`
	Peers  int           `json:"peers"`
	Wall   time.Duration `json:"wallNs"`
	// Fluid is the time the origin's link needs to send every file once:
	// the busiest origin link is the bound when peers share each file.
	Fluid time.Duration `json:"fluidNs"`
	// OriginFactors[f] is the origin's bytes for file f over its size.
	OriginFactors []float64 `json:"originFactors"`
	// SupernodeOrigin[i] is supernode i's CDN bytes from the origin over
	// the file size, -1 if it was not running at the end (killed). The
	// files' names spread their homes over the supernodes, so with the
	// rendezvous order each reads one file.
	SupernodeOrigin []float64 `json:"supernodeOrigin"`
	Verified        int       `json:"verified"`
	Errors          []string  `json:"errors,omitempty"`
}

// MaxOriginFactor is the worst file's origin bytes over its size.
func (r *ClusterResult) MaxOriginFactor() float64 {
	m := 0.0
	for _, f := range r.OriginFactors {
		m = math.Max(m, f)
	}
	return m
}

// Ratio is Wall over Fluid.
func (r *ClusterResult) Ratio() float64 { return float64(r.Wall) / float64(r.Fluid) }

// RunCluster brings up a cluster, runs the configuration and tears it down.
func RunCluster(ctx context.Context, cfg ClusterConfig) (*ClusterResult, error) {
	if cfg.Supernodes < 1 || cfg.Files < 1 || cfg.PeersPerFile < 1 || cfg.Size < 1 || cfg.OriginRate <= 0 {
		return nil, fmt.Errorf("bad cluster configuration %+v", cfg)
	}
	c, err := cluster.New(ctx, cluster.Options{Mode: cfg.Mode, BaseDir: cfg.BaseDir})
	if err != nil {
		return nil, err
	}
	res, err := runCluster(ctx, c, cfg)
	if cerr := c.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
	}
	return res, err
}

func runCluster(ctx context.Context, c *cluster.Cluster, cfg ClusterConfig) (*ClusterResult, error) {
	withCluster := cfg.Order == OrderOne || cfg.Order == OrderHomeKilled
	m, err := c.StartMulti(ctx, cluster.MultiSpec{Supernodes: cfg.Supernodes, Files: cfg.Files, PeersPerFile: cfg.PeersPerFile,
		Size: cfg.Size, OriginRate: cfg.OriginRate, Cluster: withCluster, SupernodeArgs: cfg.SupernodeArgs})
	if err != nil {
		return nil, err
	}
	r, err := newClusterRound(m, cfg)
	if err != nil {
		return nil, err
	}
	timeout := 3*FluidLimit(Curl, cfg.Files*cfg.PeersPerFile, cfg.Size, cfg.OriginRate, 0) + time.Minute
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rr, err := m.Run(dctx, r)
	if err != nil {
		return nil, err
	}
	res := &ClusterResult{Config: cfg, Mode: c.Mode().String(), Peers: cfg.Files * cfg.PeersPerFile, Wall: rr.Wall,
		Fluid: FluidLimit(Curl, cfg.Files, cfg.Size, cfg.OriginRate, 0)}
	for _, n := range rr.OriginBytes {
		res.OriginFactors = append(res.OriginFactors, float64(n)/float64(cfg.Size))
	}
	for _, sn := range m.Supernodes {
		res.SupernodeOrigin = append(res.SupernodeOrigin, supernodeOrigin(ctx, sn, cfg.Size))
	}
	res.Verified = res.Peers - len(rr.Errors)
	for _, e := range rr.Errors {
		res.Errors = append(res.Errors, firstLine(e.Error()))
	}
	return res, nil
}

// newClusterRound names the files and gives each peer its --node value
// (and, for OrderHomeKilled, the kill) as cfg.Order says.
func newClusterRound(m *cluster.Multi, cfg ClusterConfig) (*cluster.Round, error) {
	r := spreadRound(m, "cluster-"+cfg.Order)
	r.DfgetArgs = cfg.DfgetArgs
	nodes := m.Nodes()
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	picks := make([]int, cfg.Files*cfg.PeersPerFile)
	lists := make([][]string, len(picks))
	for i := range picks {
		picks[i] = rnd.IntN(len(nodes))
		lists[i] = append([]string(nil), nodes...)
		rnd.Shuffle(len(nodes), func(a, b int) { lists[i][a], lists[i][b] = lists[i][b], lists[i][a] })
	}
	switch cfg.Order {
	case OrderHome:
		r.Nodes = func(int, int) []string { return nodes }
	case OrderRandom:
		r.Nodes = func(int, int) []string { return nodes }
		r.DfgetArgs = append([]string{"--node-order", "random"}, r.DfgetArgs...)
	case OrderOne:
		r.Nodes = func(f, p int) []string { return []string{nodes[picks[f*cfg.PeersPerFile+p]]} }
	case OrderShuffled:
		r.Nodes = func(f, p int) []string { return lists[f*cfg.PeersPerFile+p] }
	case OrderDNS:
		ips := make([]string, len(m.Supernodes))
		for i, s := range m.Supernodes {
			ips[i] = s.Host.IP
		}
		if err := m.C.SetHostsFile(dnsName, ips); err != nil {
			return nil, err
		}
		name := []string{net.JoinHostPort(dnsName, strconv.Itoa(m.Supernodes[0].Port))}
		r.Nodes = func(int, int) []string { return name }
	case OrderHomeKilled:
		r.Nodes = func(int, int) []string { return nodes }
		r.During = killHome(m.Supernodes[m.Home(r.URLs[0])], cfg.Size/3, cfg.Logf)
	default:
		return nil, fmt.Errorf("unknown order %q", cfg.Order)
	}
	return r, nil
}

// spreadRound renames the round's files until each supernode is home to
// at most one (to exactly one when there are as many files): each
// supernode's origin reads then show whether the peers met at the homes,
// and a killed home takes one file with it, the one the row checks.
func spreadRound(m *cluster.Multi, tag string) *cluster.Round {
	r := m.NewRound(tag)
	for range 1000 {
		homes := map[int]bool{}
		for _, u := range r.URLs {
			homes[m.Home(u)] = true
		}
		if len(homes) == min(len(r.URLs), len(m.Supernodes)) {
			break
		}
		r = m.NewRound(tag)
	}
	return r
}

// killHome returns a Round.During that kills home with SIGKILL once its
// CDN has read at least after bytes from the origin (the origin counts a
// request's bytes only when it ends, the CDN's counter as it goes).
func killHome(home *cluster.Supernode, after int64, logf func(string, ...any)) func(context.Context) error {
	return func(ctx context.Context) error {
		deadline := time.Now().Add(time.Minute)
		for {
			mx, err := home.Metrics(ctx)
			if err != nil {
				return fmt.Errorf("home metrics: %w", err)
			}
			if n := int64(mx["dragonfly_supernode_cdn_download_size_bytes_total"]); n >= after {
				if logf != nil {
					logf("  killing home %s at %d bytes from the origin", home.Node(), n)
				}
				return syscall.Kill(home.Proc.Pid(), syscall.SIGKILL)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the home's CDN read less than %d bytes in a minute", after)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// supernodeOrigin is sn's CDN bytes from the origin over size, -1 when sn
// is not running or does not answer.
func supernodeOrigin(ctx context.Context, sn *cluster.Supernode, size int64) float64 {
	if sn.Proc.Exited() {
		return -1
	}
	mx, err := sn.Metrics(ctx)
	if err != nil {
		return -1
	}
	return mx["dragonfly_supernode_cdn_download_size_bytes_total"] / float64(size)
}

// MaxSupernodeOrigin is the largest SupernodeOrigin of a running supernode.
func (r *ClusterResult) MaxSupernodeOrigin() float64 {
	m := 0.0
	for _, f := range r.SupernodeOrigin {
		m = math.Max(m, f)
	}
	return m
}
