package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// The md5 a Dragonfly 1.x client checks is computed on demand, never
// missing. The CDN fill computes only BLAKE3, so:
//   - a v1-style client (no pieceDigest asked) that starts while the fill
//     runs gets a non-empty, correct pieceMd5 for every piece and the
//     file's md5 in its 600;
//   - after a fill that only BLAKE3 clients used (no md5 was ever
//     computed) and a supernode restart, a v1-style client still gets a
//     correct pieceMd5 for every piece and a correct 600 md5, from the
//     cache, which is not fetched again;
//   - so does a second one, from the remembered md5s.
func TestIntegrityPieceMd5OnDemand(t *testing.T) {
	o := newOrigin(t)
	cold := randomData(5*(4<<20)+4321, 1401)
	coldURL := o.add("/md5-cold.bin", cold)
	o.mu.Lock()
	o.delay["/md5-cold.bin"] = 3 * time.Millisecond // a fill of about a second
	o.mu.Unlock()
	warm := randomData(3*(4<<20)+99, 1402)
	warmURL := o.add("/md5-warm.bin", warm)
	home := t.TempDir()

	sn := startSupernode(t, home)
	if got := digestDownload(t, sn, "127.0.0.1-v1-cold", coldURL, false); string(got) != string(cold) {
		t.Fatalf("v1 client during the fill: content differs (%d of %d bytes)", len(got), len(cold))
	}
	if got := digestDownload(t, sn, "127.0.0.1-b3-only", warmURL, true); string(got) != string(warm) {
		t.Fatal("blake3 client: content differs")
	}
	if err := sn.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	sn = startSupernode(t, home)
	for i := range 2 {
		cid := fmt.Sprintf("127.0.0.1-v1-restart-%d", i)
		if got := digestDownload(t, sn, cid, warmURL, false); string(got) != string(warm) {
			t.Fatalf("v1 client %d after a restart: content differs", i)
		}
	}
	if n := o.count("/md5-warm.bin", http.StatusOK); n != 1 {
		t.Fatalf("the origin sent the file %d times: the cache was not reused", n)
	}
}
