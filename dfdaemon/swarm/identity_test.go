package swarm

import (
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/damselfly-p2p/damselfly/dfget/core/regist"
)

// Through the proxy the client names the origin. A blob's task may be its
// digest alone only for the hosts dfdaemon is told to trust with it;
// else a client whose own server answers the HEAD for a private digest
// would join that blob's swarm. Any other host's blob is a task of its
// own URL (and digest).
func TestURLSwarmSharesByDigestOnlyForDigestHosts(t *testing.T) {
	const d = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	s := newTestSwarm(t)
	u := URLSwarm{S: s, DigestHosts: []string{"registry.example", "other.example:5000"}}
	taskID := func(raw string, id Identity) string {
		t.Helper()
		target, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := s.config(httptest.NewRequest("GET", raw, nil), Source{URL: target}, id)
		if err != nil {
			t.Fatal(err)
		}
		tid, err := regist.TaskID(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tid
	}
	viaProxy := func(raw string) string {
		t.Helper()
		target, _ := url.Parse(raw)
		return taskID(raw, u.identity(target))
	}
	mirror := taskID("https://registry.example/v2/private/app/blobs/"+d, Identity{Digest: d})
	for _, tc := range []struct {
		url    string
		shared bool
	}{
		{"https://registry.example/v2/other/name/blobs/" + d, true},
		{"https://REGISTRY.example:443/v2/x/blobs/" + d, true},
		{"http://other.example:5000/v2/x/blobs/" + d, true},
		{"https://attacker.example/v2/x/blobs/" + d, false},
		{"https://registry.example:8443/v2/x/blobs/" + d, false},
		{"http://other.example/v2/x/blobs/" + d, false},
	} {
		if got := viaProxy(tc.url) == mirror; got != tc.shared {
			t.Errorf("%s: shares the mirror's task %v, want %v", tc.url, got, tc.shared)
		}
	}
	// An untrusted host's blob is still one task per URL, and checked.
	a := "https://attacker.example/v2/x/blobs/" + d
	if viaProxy(a) != viaProxy(a) || viaProxy(a) == viaProxy("https://attacker.example/v2/y/blobs/"+d) {
		t.Error("an untrusted host's blob is not named by its URL")
	}
	if target, _ := url.Parse(a); u.identity(target).Digest != d {
		t.Error("an untrusted host's blob is not checked against its digest")
	}
}
