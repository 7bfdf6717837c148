package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterHomeLoopback: three supernodes that know nothing of each other,
// and dfgets given all three in different orders. Every dfget of a file
// registers with the same supernode (the file's home, by rendezvous hashing
// of its task ID), so each file is read from the origin once, and the files'
// homes are spread over the supernodes.
func TestClusterHomeLoopback(t *testing.T) {
	o := newOrigin(t)
	var sns []*supernode
	for i := 0; i < 3; i++ {
		sns = append(sns, startSupernode(t, t.TempDir()))
	}
	addrs := []string{Addr(sns[0].api), Addr(sns[1].api), Addr(sns[2].api)}
	lists := []string{
		strings.Join(addrs, ","),
		addrs[2] + "," + addrs[0] + "," + addrs[1],
		addrs[1] + "," + addrs[2] + "," + addrs[0],
	}
	out := t.TempDir()
	homes := map[string]bool{}
	const files = 6
	for f := 0; f < files; f++ {
		path := fmt.Sprintf("/layer-%d", f)
		data := randomData(1<<20+f*4099, uint64(f+1))
		url := o.add(path, data)
		runs := make([]<-chan dfgetRun, len(lists))
		for i, list := range lists {
			p := newDfgetPeer(t, fmt.Sprintf("127.0.%d.%d", f+1, i+1))
			runs[i] = p.runAsync(nil, "-u", url, "-o", filepath.Join(out, fmt.Sprintf("f%d-%d", f, i)), "--notbs",
				"--node", list)
		}
		var node string
		for i, ch := range runs {
			r := <-ch
			if r.code != 0 {
				t.Fatalf("file %d dfget %d: exit %d: %s %s", f, i, r.code, r.stdout, r.stderr)
			}
			fileEquals(t, filepath.Join(out, fmt.Sprintf("f%d-%d", f, i)), data)
			got := connectedNode(r.stdout)
			if node == "" {
				node = got
			}
			if got != node {
				t.Errorf("file %d: dfget %d registered at %s, another at %s", f, i, got, node)
			}
		}
		homes[node] = true
		if n := o.count(path, 200); n != 1 {
			t.Errorf("file %d: origin served %d full GETs, want 1", f, n)
		}
	}
	if len(homes) < 2 {
		t.Errorf("%d files all have the home %v: the order does not spread tasks", files, homes)
	}
}

func connectedNode(stdout string) string {
	_, rest, ok := strings.Cut(stdout, "connected to node:")
	if !ok {
		return ""
	}
	return strings.Fields(rest)[0]
}
