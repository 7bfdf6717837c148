package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
)

// The supernode-cluster targets, at test scale: 32 MiB files (the bench
// rows in test/bench/swarm run the 128 MiB, 24-peer layout).
const (
	multiSize   = 32<<20 + 4321
	multiOrigin = 400 * Mbit
)

func startMulti(t *testing.T, spec MultiSpec) (*Multi, context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("short mode: end-to-end test with bin/supernode and bin/dfget")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	c := NewForTest(t, Options{Mode: ModeNetns})
	m, err := c.StartMulti(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	return m, ctx
}

// checkRound fails on any peer error and on a file the origin served more
// than limit times.
func checkRound(t *testing.T, name string, res *RoundResult, size int64, limit float64) {
	t.Helper()
	for _, err := range res.Errors {
		t.Errorf("%s: %v", name, err)
	}
	for f, n := range res.OriginBytes {
		factor := float64(n) / float64(size)
		t.Logf("%s: file %d: origin served %.3f x F; all peers done in %s", name, f+1, factor, res.Wall.Round(time.Millisecond))
		if factor > limit {
			t.Errorf("%s: file %d: origin served %d bytes, %.3f x F, want <= %.2f x", name, f+1, n, factor, limit)
		}
	}
}

// Three supernodes without --cluster, every peer with the whole list:
// dfget's rendezvous order sends all peers of a file to its home, so the
// origin serves each file once, whatever the order of the peers' lists,
// and with the list given as one name with three addresses.
func TestClusterRendezvousHome(t *testing.T) {
	m, ctx := startMulti(t, MultiSpec{Supernodes: 3, Files: 3, PeersPerFile: 4, Size: multiSize, OriginRate: multiOrigin})
	nodes := m.Nodes()
	rnd := rand.New(rand.NewPCG(1, 2))
	ips := make([]string, len(m.Supernodes))
	for i, s := range m.Supernodes {
		ips[i] = s.Host.IP
	}
	if err := m.C.SetHostsFile("supernodes.test", ips); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		nodes func(f, p int) []string
	}{
		{"full-list", func(int, int) []string { return nodes }},
		{"shuffled", func(int, int) []string {
			l := append([]string(nil), nodes...)
			rnd.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
			return l
		}},
		{"dns", func(int, int) []string { return []string{fmt.Sprintf("supernodes.test:%d", m.Supernodes[0].Port)} }},
	} {
		r := spreadRound(t, m, tc.name)
		r.Nodes = tc.nodes
		before := cdnBytes(ctx, t, m)
		res, err := m.Run(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		checkRound(t, tc.name, res, multiSize, 1.02)
		// Each file was read by its home (so the name's lookup gave every
		// address, and the order was the same for every peer).
		after := cdnBytes(ctx, t, m)
		for i := range m.Supernodes {
			if got, want := after[i]-before[i], float64(multiSize); got < want || got > 1.02*want {
				t.Errorf("%s: supernode %d read %.0f bytes from the origin; it is home to one file of %.0f", tc.name, i+1, got, want)
			}
		}
	}
}

// spreadRound names the files of a round so that each supernode is home
// to one of them.
func spreadRound(t *testing.T, m *Multi, tag string) *Round {
	t.Helper()
	for range 1000 {
		r := m.NewRound(tag)
		seen := map[int]bool{}
		for _, u := range r.URLs {
			seen[m.Home(u)] = true
		}
		if len(seen) == len(m.Supernodes) {
			return r
		}
	}
	t.Fatal("no names found that spread the files over the supernodes")
	return nil
}

// cdnBytes is what each supernode's CDN has read from the origin.
func cdnBytes(ctx context.Context, t *testing.T, m *Multi) []float64 {
	t.Helper()
	out := make([]float64, len(m.Supernodes))
	for i, s := range m.Supernodes {
		mx, err := s.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = mx["dragonfly_supernode_cdn_download_size_bytes_total"]
	}
	return out
}

// Three supernodes with --cluster, every peer given one supernode at random
// (as Dragonfly 1.x dfgets are): a supernode that is not a file's home
// reads it from the home, so the origin still serves it about once.
func TestClusterFetchFromHome(t *testing.T) {
	m, ctx := startMulti(t, MultiSpec{Supernodes: 3, Files: 3, PeersPerFile: 4, Size: multiSize, OriginRate: multiOrigin, Cluster: true})
	r := m.NewRound("one-node")
	r.Nodes = randomNodes(m, r, rand.New(rand.NewPCG(3, 4)))
	res, err := m.Run(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	checkRound(t, "one-node", res, multiSize, 1.05)
	sums := sumMetrics(ctx, t, m, "dragonfly_supernode_cdn_cluster_bytes_total", "dragonfly_supernode_cluster_fetch_fallbacks_total")
	fromMembers, fallbacks := sums[0], sums[1]
	t.Logf("CDN bytes from members: %.0f (%.2f x F), fallbacks to the origin: %.0f", fromMembers, fromMembers/multiSize, fallbacks)
	if fromMembers < multiSize*3 || fallbacks != 0 {
		t.Errorf("CDN read %.0f bytes from members with %.0f fallbacks; want every file's non-home supernode fed by its home", fromMembers, fallbacks)
	}
}

// sumMetrics is each named metric (all its series) summed over the
// supernodes.
func sumMetrics(ctx context.Context, t *testing.T, m *Multi, names ...string) []float64 {
	t.Helper()
	out := make([]float64, len(names))
	for _, s := range m.Supernodes {
		mx, err := s.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range names {
			out[i] += SumMetric(mx, name)
		}
	}
	return out
}

// randomNodes gives each peer of r one supernode picked at random, as
// Dragonfly 1.x dfgets pick one, except the first peer of each file, which
// gets the supernode after the file's home: every file is asked for on a
// supernode that is not its home.
func randomNodes(m *Multi, r *Round, rnd *rand.Rand) func(f, p int) []string {
	picks := map[[2]int]int{}
	for f, url := range r.URLs {
		home := m.Home(url)
		for p := range m.Peers[f] {
			pick := rnd.IntN(len(m.Supernodes))
			if p == 0 {
				pick = (home + 1) % len(m.Supernodes)
			}
			picks[[2]int{f, p}] = pick
		}
	}
	return func(f, p int) []string { return []string{m.Supernodes[picks[[2]int{f, p}]].Node()} }
}

// The home of a file is killed with SIGKILL while its peers download: they
// move to the next supernode of the file's order and finish with correct
// bytes, and the origin serves the file at most twice.
func TestClusterHomeKilled(t *testing.T) {
	// A slower origin, so the kill lands mid-file.
	m, ctx := startMulti(t, MultiSpec{Supernodes: 3, Files: 1, PeersPerFile: 4, Size: multiSize, OriginRate: 80 * Mbit, Cluster: true})
	r := m.NewRound("killed")
	nodes := m.Nodes()
	r.Nodes = func(int, int) []string { return nodes }
	home := m.Supernodes[m.Home(r.URLs[0])]
	r.During = func(ctx context.Context) error {
		deadline := time.Now().Add(time.Minute)
		for {
			// The origin counts a request's bytes when it ends: the home's
			// CDN counter tells how far it is.
			mx, err := home.Metrics(ctx)
			if err != nil {
				return err
			}
			if n := int64(mx["dragonfly_supernode_cdn_download_size_bytes_total"]); n >= multiSize/3 {
				t.Logf("killing home %s at %d of %d bytes from the origin", home.Node(), n, int64(multiSize))
				return syscall.Kill(home.Proc.Pid(), syscall.SIGKILL)
			}
			if time.Now().After(deadline) {
				return errors.New("the home's CDN read not a third of the file in a minute")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	res, err := m.Run(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	checkRound(t, "killed", res, multiSize, 2)
}

// A member that serves a wrong piece is caught: the home's cache file is
// damaged on disk after its CDN wrote it (its digests are the ones it
// computed then), and another member reading the file from it detects the
// piece, reads the rest from the origin, and its peers get correct bytes.
func TestClusterLyingMember(t *testing.T) {
	m, ctx := startMulti(t, MultiSpec{Supernodes: 3, Files: 1, PeersPerFile: 2, Size: multiSize, OriginRate: multiOrigin, Cluster: true})
	r := m.NewRound("liar")
	homeIdx := m.Home(r.URLs[0])
	home, other := m.Supernodes[homeIdx], m.Supernodes[(homeIdx+1)%3]
	warm := filepath.Join(m.Peers[0][0].Dir(), "warm.out")
	p, err := m.Peers[0][0].StartDfget(ctx, Dfget{URL: r.URLs[0], Output: warm, Nodes: []string{home.Node()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	id, err := taskid.Registration{RawURL: r.URLs[0]}.ID()
	if err != nil {
		t.Fatal(err)
	}
	damageCache(t, home.Home, id, 10<<20) // in the third piece (4 MiB pieces)
	r.Nodes = func(int, int) []string { return []string{other.Node()} }
	res, err := m.Run(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	checkRound(t, "liar", res, multiSize, 2)
	mx, err := other.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	digestFallbacks := mx[`dragonfly_supernode_cluster_fetch_fallbacks_total{reason="digest"}`]
	fromHome := SumMetric(mx, "dragonfly_supernode_cdn_cluster_bytes_total")
	t.Logf("%s read %.0f bytes from the home before the bad piece; digest fallbacks %.0f", other.Node(), fromHome, digestFallbacks)
	if digestFallbacks != 1 || fromHome <= 0 || fromHome >= multiSize {
		t.Errorf("digest fallbacks %.0f, bytes from the home %.0f: want the bad piece caught after some good ones", digestFallbacks, fromHome)
	}
}

// damageCache flips one byte at off in the cache file of task id under a
// supernode's home directory.
func damageCache(t *testing.T, snHome, id string, off int64) {
	t.Helper()
	var path string
	_ = filepath.WalkDir(filepath.Join(snHome, "repo"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(p) == id {
			path = p
		}
		return nil
	})
	if path == "" || strings.Contains(path, ".") && filepath.Ext(path) != "" {
		t.Fatalf("no cache file of %s under %s", id, snHome)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Two supernodes whose cluster lists disagree (each names only the other,
// so each takes the other for every task's home), with peers registering
// at both at once: a fetch is never forwarded twice and a supernode never
// serves a task it is itself reading from the asker, so nothing waits in a
// loop, every peer finishes, and the origin serves the file at most twice.
func TestClusterDisagreeingLists(t *testing.T) {
	m, ctx := startMulti(t, MultiSpec{Supernodes: 2, Files: 1, PeersPerFile: 4, Size: multiSize, OriginRate: multiOrigin, Cluster: true,
		ClusterList: func(i int, all []string) []string { return []string{all[1-i]} }})
	if err := m.WaitClusterAlive(ctx, 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	r := m.NewRound("crossed")
	r.Nodes = func(_, p int) []string { return []string{m.Supernodes[p%2].Node()} }
	res, err := m.Run(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	checkRound(t, "crossed", res, multiSize, 2)
	var refused float64
	for _, s := range m.Supernodes {
		mx, err := s.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		refused += mx[`dragonfly_supernode_cluster_fetch_fallbacks_total{reason="refused"}`]
	}
	t.Logf("fetches refused as a loop: %.0f", refused)
}

// A preheat on a supernode that is not the file's home reaches the home:
// the home reads the origin, the other fills its cache from the home, and
// the origin serves the file once.
func TestClusterPreheatReachesHome(t *testing.T) {
	m, ctx := startMulti(t, MultiSpec{Supernodes: 3, Files: 1, Size: multiSize, OriginRate: multiOrigin, Cluster: true})
	r := m.NewRound("preheat")
	homeIdx := m.Home(r.URLs[0])
	home, other := m.Supernodes[homeIdx], m.Supernodes[(homeIdx+1)%3]
	if err := preheat(ctx, other, r.URLs[0]); err != nil {
		t.Fatal(err)
	}
	served, err := m.Origin.BytesServed(ctx, r.Names[0], multiSize)
	if err != nil {
		t.Fatal(err)
	}
	hm, err := home.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	om, err := other.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fromOrigin, fromHome := hm["dragonfly_supernode_cdn_download_size_bytes_total"], om["dragonfly_supernode_cdn_cluster_bytes_total"]
	t.Logf("origin served %d bytes; home read %.0f from the origin, the other %.0f from the home", served, fromOrigin, fromHome)
	if served != multiSize || fromOrigin != multiSize || fromHome != multiSize || om["dragonfly_supernode_cdn_download_size_bytes_total"] != 0 {
		t.Errorf("preheat on a non-home supernode: origin %d, home from origin %.0f, other from home %.0f; want the file once each", served, fromOrigin, fromHome)
	}
}

// preheat runs a file preheat on s and waits for its success.
func preheat(ctx context.Context, s *Supernode, url string) error {
	body, _ := json.Marshal(types.PreheatCreateRequest{Type: types.PreheatTypeFile, URL: url})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.Node()+"/preheats", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient().Do(req)
	if err != nil {
		return err
	}
	var created types.PreheatCreateResponse
	err = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create preheat: %d %v", resp.StatusCode, err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Node()+"/preheats/"+created.ID, nil)
		resp, err := httpClient().Do(req)
		if err != nil {
			return err
		}
		var info types.PreheatInfo
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		switch {
		case err != nil:
			return err
		case info.Status == types.PreheatSuccess:
			return nil
		case info.Status == types.PreheatFailed:
			return fmt.Errorf("preheat failed: %s", info.ErrorMsg)
		}
	}
	return errors.New("preheat not done in a minute")
}
