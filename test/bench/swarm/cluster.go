package swarm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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
)

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
	Verified      int       `json:"verified"`
	Errors        []string  `json:"errors,omitempty"`
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
	m, err := c.StartMulti(ctx, cluster.MultiSpec{Supernodes: cfg.Supernodes, Files: cfg.Files, PeersPerFile: cfg.PeersPerFile,
		Size: cfg.Size, OriginRate: cfg.OriginRate, Cluster: cfg.Order == OrderOne, SupernodeArgs: cfg.SupernodeArgs})
	if err != nil {
		return nil, err
	}
	r := m.NewRound("cluster-" + cfg.Order)
	r.DfgetArgs = cfg.DfgetArgs
	nodes := m.Nodes()
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	picks := make([]int, cfg.Files*cfg.PeersPerFile)
	for i := range picks {
		picks[i] = rnd.IntN(len(nodes))
	}
	switch cfg.Order {
	case OrderHome:
		r.Nodes = func(int, int) []string { return nodes }
	case OrderRandom:
		r.Nodes = func(int, int) []string { return nodes }
		r.DfgetArgs = append([]string{"--node-order", "random"}, r.DfgetArgs...)
	case OrderOne:
		r.Nodes = func(f, p int) []string { return []string{nodes[picks[f*cfg.PeersPerFile+p]]} }
	default:
		return nil, fmt.Errorf("unknown order %q", cfg.Order)
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
	res.Verified = res.Peers - len(rr.Errors)
	for _, e := range rr.Errors {
		res.Errors = append(res.Errors, firstLine(e.Error()))
	}
	return res, nil
}
