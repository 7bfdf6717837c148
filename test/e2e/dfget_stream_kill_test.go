package e2e

import (
	"crypto/sha256"
	"io"
	"path/filepath"
	"testing"
)

// The peer a streaming client is fetching from dies mid-stream: the stream
// goes on from other holders (here the supernode) and stdout still carries
// exactly the file, with no fallback to the source needed.
func TestDfgetStreamPeerKilled(t *testing.T) {
	o := newOrigin(t)
	data := randomData(48<<20, 31)
	url := o.add("/stream-kill.bin", data)
	sn := startSupernode(t, t.TempDir())
	seed := newDfgetPeer(t, "127.0.0.2")
	if r := seed.run(sn, "-u", url, "-o", filepath.Join(t.TempDir(), "seed"), "--notbs"); r.code != 0 {
		t.Fatalf("seed: exit %d %s", r.code, r.stdout)
	}
	fromPeersBefore := metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="peer"}`)

	p := newDfgetPeer(t, "127.0.0.3")
	var got [32]byte
	var fromPeersAtKill float64
	r := p.stream(sn, func(r io.Reader) {
		h := sha256.New()
		if _, err := io.CopyN(h, r, 8<<20); err != nil {
			t.Errorf("first bytes: %v", err)
		}
		fromPeersAtKill = metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="peer"}`)
		seed.killServer()
		if _, err := io.Copy(h, r); err != nil {
			t.Errorf("rest of the stream: %v", err)
		}
		copy(got[:], h.Sum(nil))
	}, "-u", url, "--notbs", "--window-size", "2", "--locallimit", "24MB")
	if r.code != 0 {
		t.Fatalf("stream: exit %d: %s", r.code, r.stderr)
	}
	if got != sha256.Sum256(data) {
		t.Fatal("streamed bytes differ from the origin's")
	}
	if fromPeersAtKill <= fromPeersBefore {
		t.Errorf("the stream took no piece from the seed before it was killed (peer-scheduled pieces %v -> %v)",
			fromPeersBefore, fromPeersAtKill)
	}
}
