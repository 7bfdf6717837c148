package peer

import (
	"fmt"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
)

// peerGauge returns the peer gauge's series as value by label.
func peerGauge(t *testing.T, mx *metrics.Metrics) map[string]float64 {
	t.Helper()
	fams, err := mx.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() == "dragonfly_supernode_peers" {
			for _, s := range f.GetMetric() {
				out[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
			}
		}
	}
	return out
}

// Peer registration is unauthenticated and every address is valid: the
// gauge's series are bounded, one address is one series whatever its
// spelling, and the gauge returns to zero when the peers go.
func TestPeerGaugeBounded(t *testing.T) {
	mx := metrics.New()
	m := New(mx.Peers, mx.Labels)
	var ids []string
	reg := func(ip string) {
		t.Helper()
		id, err := m.Register(types.PeerCreateRequest{IP: ip, HostName: "h", Port: 15000})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	reg("10.0.0.1")
	reg("::ffff:10.0.0.1")
	const n = 1000
	for i := range n {
		reg(fmt.Sprintf("10.1.%d.%d", i>>8, i&0xff))
	}
	g := peerGauge(t, mx)
	t.Logf("%d series after %d registrations", len(g), n+2)
	// 10.0.0.1 takes one of the MaxPeers values, the first others the rest.
	if other := n - (metrics.MaxPeers - 1); len(g) > metrics.MaxPeers+1 || g["10.0.0.1"] != 2 || g[metrics.Other] != float64(other) {
		t.Errorf("%d series, 10.0.0.1 at %v, other at %v: want at most %d, 2 and %d", len(g), g["10.0.0.1"],
			g[metrics.Other], metrics.MaxPeers+1, other)
	}
	for _, id := range ids {
		if err := m.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	for l, v := range peerGauge(t, mx) {
		if v != 0 {
			t.Errorf("peer %s at %v after every peer is gone", l, v)
		}
	}
}
