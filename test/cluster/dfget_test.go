package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/cluster/synth"
)

// dfgetSwarm starts an origin (uplink shaped to originRate), a supernode and
// n peers, has every peer download one file at once with dfget, and checks
// every byte. It returns the origin, the peers and the file's name.
func dfgetSwarm(t *testing.T, mode Mode, n int, size, originRate int64) (*Origin, []*Host, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("short mode: end-to-end test with bin/supernode and bin/dfget")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	c := NewForTest(t, Options{Mode: mode})
	oh, err := c.AddHost(ctx, HostSpec{Name: "origin", Uplink: originRate})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := c.AddHost(ctx, HostSpec{Name: "supernode"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.StartOrigin(ctx, oh)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.StartSupernode(ctx, sh)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("swarm-%d.bin", n)
	peers := make([]*Host, n)
	procs := make([]*Proc, n)
	outs := make([]string, n)
	for i := range peers {
		if peers[i], err = c.AddHost(ctx, HostSpec{Name: fmt.Sprintf("peer%d", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range peers {
		outs[i] = filepath.Join(h.Dir(), "out", name)
		if err := os.MkdirAll(filepath.Dir(outs[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		procs[i], err = h.StartDfget(ctx, Dfget{URL: o.URL(name, size), Output: outs[i], Nodes: []string{sn.Node()}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatalf("peer %d: %v", i+1, err)
		}
		f, err := os.Open(outs[i])
		if err != nil {
			t.Fatalf("peer %d output: %v", i+1, err)
		}
		err = synth.Verify(f, name, size)
		f.Close()
		if err != nil {
			t.Fatalf("peer %d: %v", i+1, err)
		}
		t.Logf("peer %d: %v, peak RSS %d MiB", i+1, p.Duration().Round(time.Millisecond), p.MaxRSS()>>20)
	}
	return o, peers, name
}

func TestDfgetSwarmNetns(t *testing.T) {
	const size = 24<<20 + 12345
	o, peers, name := dfgetSwarm(t, ModeNetns, 4, size, 100*Mbit)
	served, err := o.BytesServed(context.Background(), name, size)
	if err != nil {
		t.Fatal(err)
	}
	var upload int64
	for _, h := range peers {
		k, err := h.Counters()
		if err != nil {
			t.Fatal(err)
		}
		upload += k.Sent
	}
	t.Logf("origin served %d bytes (%.3f x F); peers uploaded %d bytes on the wire", served, float64(served)/size, upload)
	// One CDN fetch, plus at most what a length probe may pull before it
	// closes its connection.
	if served < size || served > size*11/10 {
		t.Errorf("origin served %d bytes for a %d-byte file to 4 peers, want ~1x", served, size)
	}
}

func TestDfgetLoopback(t *testing.T) {
	const size = 9<<20 + 7
	o, _, name := dfgetSwarm(t, ModeLoopback, 2, size, 0)
	if served, err := o.BytesServed(context.Background(), name, size); err != nil || served > size*11/10 {
		t.Errorf("origin served %d bytes (%v) for a %d-byte file", served, err, size)
	}
}

func TestDfgetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: end-to-end test with bin/supernode and bin/dfget")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := NewForTest(t, Options{})
	hosts := make([]*Host, 3)
	for i, n := range []string{"origin", "supernode", "peer"} {
		var err error
		if hosts[i], err = c.AddHost(ctx, HostSpec{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := c.StartOrigin(ctx, hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.StartSupernode(ctx, hosts[1])
	if err != nil {
		t.Fatal(err)
	}
	const size = 10<<20 + 3
	out := filepath.Join(hosts[2].Dir(), "stream.out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := hosts[2].StartDfget(ctx, Dfget{URL: o.URL("stream.bin", size), Nodes: []string{sn.Node()}, Stream: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := synth.Verify(f, "stream.bin", size); err != nil {
		t.Fatalf("stream output: %v", err)
	}
}
