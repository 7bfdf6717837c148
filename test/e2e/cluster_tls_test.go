package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// The members of a cluster whose API ports serve TLS reach each other over
// HTTPS (trusted by their shared certificate): each sees the other alive,
// and of two dfgets of one file, one at each member, the member that is not
// the file's home reads it from the home, so the origin serves it once.
func TestClusterOverTLS(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5<<20+3, 71)
	const path = "/cluster-tls.bin"
	url := o.add(path, data)
	cert, key := selfSigned(t, t.TempDir())
	const token = "cluster-token"
	var ports []int
	for len(ports) < 4 {
		if p := FreePort(t); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	list := Addr(ports[0]) + "," + Addr(ports[2])
	sns := []*supernode{
		startSupernodeAt(t, t.TempDir(), ports[0], ports[1], "--tls-cert", cert, "--tls-key", key, "--auth-token", token,
			"--cluster", list, "--cluster-probe-interval", "200ms"),
		startSupernodeAt(t, t.TempDir(), ports[2], ports[3], "--tls-cert", cert, "--tls-key", key, "--auth-token", token,
			"--cluster", list, "--cluster-probe-interval", "200ms"),
	}
	hc := tlsClient(t, cert)
	get := func(sn *supernode, path string) string {
		req, _ := http.NewRequest(http.MethodGet, "https://"+Addr(sn.api)+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	allAlive := func(sn *supernode) bool {
		var info types.ClusterInfo
		if json.Unmarshal([]byte(get(sn, "/api/v1/cluster")), &info) != nil || len(info.Members) != 2 {
			return false
		}
		return info.Members[0].Alive && info.Members[1].Alive
	}
	Eventually(t, 10*time.Second, "both members to see each other over HTTPS", func() bool {
		return allAlive(sns[0]) && allAlive(sns[1])
	})
	for i, sn := range sns {
		p := newDfgetPeer(t, "127.0.0."+strconv.Itoa(2+i))
		out := filepath.Join(t.TempDir(), "out")
		if r := p.run(sn, "-u", url, "-o", out, "--notbs", "--node-cacerts", cert, "--node-token", token); r.code != 0 {
			t.Fatalf("dfget at member %d: exit %d: %s", i, r.code, r.stdout)
		}
		fileEquals(t, out, data)
	}
	if n, ranged := o.count(path, http.StatusOK), o.count(path, http.StatusPartialContent); n != 1 || ranged != 0 {
		t.Fatalf("origin served %s %d times whole and %d by range, want once whole", path, n, ranged)
	}
	var fromMember float64
	for _, sn := range sns {
		v, _ := sampleSum(strings.NewReader(get(sn, "/metrics")), "dragonfly_supernode_cdn_cluster_bytes_total")
		fromMember += v
	}
	if fromMember <= 0 {
		t.Fatal("no member read the file from the other")
	}
}
