package e2e

import (
	"testing"
)

// An image of several random layers, pushed to a real registry, pulled by
// skopeo through two dfdaemons (each its own host: work home, peer
// server) as a registries.conf mirror: both copies equal a direct pull,
// every blob went through the swarm, and the registry served each blob
// once (to the supernode's CDN).
func TestDfdaemonMirrorPull(t *testing.T) {
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 150, 3<<20, 5<<20+17, 9<<20, 1000)
	pushOCI(t, dir, reg, "team/app:v1")
	cp := startCountingProxy(t, reg, "")
	sn := startSupernode(t, t.TempDir())

	direct, code, out := pullDir(t, reg+"/team/app:v1")
	if code != 0 {
		t.Fatalf("direct pull: exit %d: %s", code, out)
	}
	checkPulled(t, direct, img)

	for range 2 {
		d := startDfdaemon(t, cp.addr, sn)
		d.pull(t, "team/app:v1", img)
		// Layers and config from the swarm, none from the registry.
		d.wantStreams(t, "p2p", len(img.Blobs)-1)
		d.wantStreams(t, "source", 0)
	}
	for d := range img.Blobs {
		if n := cp.reads(d); n > 1 {
			t.Fatalf("blob %s read %d times from the registry, want once", d, n)
		}
	}
	wantLayersReadOnce(t, img, cp.reads)
}

// The same layers in two repositories, served by signed redirects whose
// query differs per request: the task is the digest, so two dfdaemons
// pulling the two repositories make one task, one CDN fill, per blob, and
// the CDN's fetch follows the redirect without the client's credentials.
func TestDfdaemonBlobIsItsDigest(t *testing.T) {
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 200, 4<<20, 2<<20)
	pushOCI(t, dir, reg, "one/app:v1")
	pushOCI(t, dir, reg, "two/app:v1")
	ss := startSignedStorage(t, reg)
	sn := startSupernode(t, t.TempDir())
	for _, repo := range []string{"one/app:v1", "two/app:v1"} {
		d := startDfdaemon(t, ss.front, sn)
		d.pull(t, repo, img)
		d.wantStreams(t, "p2p", len(img.Blobs)-1)
	}
	wantLayersReadOnce(t, img, ss.readsOf)
}
