package e2e

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// In the source pattern the supernode names the source for a piece by its
// task's URL, that of the client whose registration made it read the
// source. A second client of the same task whose URL differs in a
// parameter --filter drops (here a signature the origin checks against the
// client's own Authorization header) fetches the pieces from its own URL,
// with its own headers and its Range re-based: P2P only (--notbs), it gets
// the range, and the origin refuses no request. The first client's peer
// server is killed, so every piece of the second comes from the source.
func TestDfgetSourcePatternOwnURL(t *testing.T) {
	data := randomData(9<<20+777, 41)
	var mu sync.Mutex
	asked := map[string]int{} // sig -> range requests
	forbidden := 0
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig := r.URL.Query().Get("sig")
		mu.Lock()
		ok := sig != "" && r.Header.Get("Authorization") == "Bearer "+sig
		if !ok {
			forbidden++
		} else if r.Header.Get("Range") != "" {
			asked[sig]++
		}
		mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer o.Close()
	sn := startSupernode(t, t.TempDir(), "--cdn-pattern", "source")
	out := t.TempDir()
	want := data[1000:]
	for _, c := range []struct{ ip, sig string }{{"127.0.9.1", "first"}, {"127.0.9.2", "second"}} {
		p := newDfgetPeer(t, c.ip)
		dst := filepath.Join(out, c.sig)
		r := p.run(sn, "-u", o.URL+"/signed.bin?sig="+c.sig, "--filter", "sig", "-o", dst, "--notbs",
			"--header", "Authorization: Bearer "+c.sig, "--header", "Range: bytes=1000-")
		t.Logf("client %s: exit %d: %s", c.sig, r.code, lastLine(r.stdout))
		if r.code != 0 {
			t.Fatalf("client %s: exit %d: %s\n%s", c.sig, r.code, r.stdout, p.clientLog())
		}
		fileEquals(t, dst, want)
		p.killServer()
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("range requests by signature %v, refused %d", asked, forbidden)
	if forbidden != 0 || asked["second"] == 0 {
		t.Fatalf("the origin refused %d requests and got %d range requests with the second client's URL",
			forbidden, asked["second"])
	}
}
