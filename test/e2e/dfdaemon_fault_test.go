package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A registry whose stored layer no longer matches its digest: the pull
// through the dfdaemon fails, the dfdaemon aborted the stream (counted as
// a digest mismatch, never as served), and a second pull through a fresh
// dfdaemon fails too: nothing kept the bad bytes as good.
func TestDfdaemonDigestMismatchFailsPull(t *testing.T) {
	reg, root := startRegistry(t)
	dir, img := writeOCI(t, 160, 2<<20, 6<<20)
	pushOCI(t, dir, reg, "bad/app:v1")
	bad := img.Layers[1]
	hex := strings.TrimPrefix(bad, "sha256:")
	data := filepath.Join(root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatalf("registry storage: %v", err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(data, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sn := startSupernode(t, t.TempDir())
	for i := range 2 {
		d := startDfdaemon(t, reg, sn)
		_, code, out := d.tryPull(t, "bad/app:v1")
		if code == 0 {
			t.Fatalf("pull %d of a corrupt layer succeeded: %s", i, out)
		}
		if n := d.metric(t, `dragonfly_dfdaemon_streams_total{result="digest_mismatch"}`); n < 1 {
			t.Fatalf("pull %d: no digest mismatch counted (skopeo: %s)", i, out)
		}
		// The good layer and the config went through; the bad one never.
		if n := d.metric(t, `dragonfly_dfdaemon_streams_total{result="p2p"}`) +
			d.metric(t, `dragonfly_dfdaemon_streams_total{result="source"}`); n > float64(len(img.Blobs)-2) {
			t.Fatalf("pull %d: %v streams served whole, but only %d blobs are good", i, n, len(img.Blobs)-2)
		}
		ents, _ := os.ReadDir(filepath.Join(d.home, "data"))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".service") {
				t.Fatalf("pull %d: the peer server keeps %s", i, e.Name())
			}
		}
		// The supernode checked the layer's sha256 in its fill (the
		// registration carries it) and failed the task: each pull's fill
		// of the bad layer failed, none was kept as good.
		if n := metricValue(t, sn, "dragonfly_supernode_cdn_download_failed_total"); n < float64(i+1) {
			t.Fatalf("pull %d: the supernode counted %v failed fills, want %d", i, n, i+1)
		}
	}
}

// A registry behind bearer-token auth: the 401 challenge reaches skopeo
// through the mirror, and the token skopeo got goes with the blob GETs to
// the registry, from the supernode's CDN too.
func TestDfdaemonTokenAuthPassesThrough(t *testing.T) {
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 170, 3<<20, 1<<20)
	pushOCI(t, dir, reg, "private/app:v1")
	cp := startCountingProxy(t, reg, "s3cret-token")
	sn := startSupernode(t, t.TempDir())
	d := startDfdaemon(t, cp.addr, sn)
	resp, err := http.Get("http://" + d.addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "/token") {
		t.Fatalf("GET /v2/ without a token: %d %q, want the registry's 401 challenge", resp.StatusCode,
			resp.Header.Get("WWW-Authenticate"))
	}
	d.pull(t, "private/app:v1", img)
	d.wantStreams(t, "p2p", len(img.Blobs)-1)
	wantLayersReadOnce(t, img, cp.reads)
}

// With its supernode unreachable the dfdaemon still serves every blob,
// from the registry directly.
func TestDfdaemonNoSupernodeFallsBackToRegistry(t *testing.T) {
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 180, 2<<20, 3<<20)
	pushOCI(t, dir, reg, "solo/app:v1")
	d := startDfdaemon(t, reg, nil)
	d.pull(t, "solo/app:v1", img)
	d.wantStreams(t, "source", len(img.Blobs)-1)
}

// A client that leaves mid-layer frees the stream: the download stops,
// and the dfdaemon's goroutines go back to what they were. The client had
// the length before the first byte and its first bytes long before the
// layer was downloaded.
func TestDfdaemonClientDisconnectFreesStream(t *testing.T) {
	reg, _ := startRegistry(t)
	const size = 48 << 20
	dir, img := writeOCI(t, 190, size, 1<<20)
	pushOCI(t, dir, reg, "big/app:v1")
	sn := startSupernode(t, t.TempDir())
	// 4 MB/s: the layer takes 12 s, the test leaves after 1 MiB.
	d := startDfdaemon(t, reg, sn, "--ratelimit", "4MB")
	// A whole small layer first: the connections a finished stream
	// leaves idle for the next (to the registry, the supernode) are part
	// of the baseline.
	warm, err := http.Get("http://" + d.addr + "/v2/big/app/blobs/" + img.Layers[1])
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(warm.Body); err != nil || !bytes.Equal(b, img.Blobs[img.Layers[1]]) {
		t.Fatalf("small layer: %d bytes, %v", len(b), err)
	}
	warm.Body.Close()
	Eventually(t, 10*time.Second, "the small layer's stream to end", func() bool {
		return d.metric(t, "dragonfly_dfdaemon_streams_in_flight") == 0
	})
	base := d.metric(t, "go_goroutines ")
	layer := img.Layers[0]
	resp, err := http.Get("http://" + d.addr + "/v2/big/app/blobs/" + layer)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(img.Blobs[layer])) {
		t.Fatalf("blob GET: %d, length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, len(img.Blobs[layer]))
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatalf("first MiB: %v", err)
	}
	if n := d.metric(t, "dragonfly_dfdaemon_streams_in_flight"); n != 1 {
		t.Fatalf("%v streams in flight while the client reads, want 1", n)
	}
	resp.Body.Close()
	Eventually(t, 10*time.Second, "the stream to stop", func() bool {
		return d.metric(t, "dragonfly_dfdaemon_streams_in_flight") == 0
	})
	d.wantStreams(t, "client_gone", 1)
	t.Logf("goroutines: base %v now %v", base, d.metric(t, "go_goroutines "))
	Eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return d.metric(t, "go_goroutines ") <= base+2
	})
}
