package proxy

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCurlThroughProxy drives the proxy with curl, a client built on
// OpenSSL rather than Go's TLS stack: it must accept the minted leaf
// (intercepted host) and tunnel the others.
func TestCurlThroughProxy(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed, so there is no non-Go client to run")
	}
	a := tlsOrigin(t, "a", []byte("from-a"))
	d := tlsOrigin(t, "d", []byte("from-d"))
	certFile, keyFile, _ := testCA(t)
	swarm := newRecorder(t)
	_, px := startProxy(t, Options{
		Swarm: swarm,
		Rules: []Rule{{Regx: mustRegexp(t, `/blobs/sha256:`)}},
		Hijack: &HijackConfig{Cert: certFile, Key: keyFile,
			Hosts: []HijackHost{{Regx: authorityRegx(t, a.URL), Certs: []string{writeCertPEM(t, a.Certificate())}}}},
	})
	dCA := writeCertPEM(t, d.Certificate())
	run := func(cacert, url string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--fail", "--noproxy", "", "--proxy", px.URL,
			"--cacert", cacert, url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		return string(out)
	}
	blob := a.URL + "/v2/x/blobs/sha256:42"
	if got := run(certFile, blob); got != "swarm:"+blob {
		t.Errorf("intercepted blob GET: %q", got)
	}
	if got := run(certFile, a.URL+"/data"); got != "from-a" {
		t.Errorf("intercepted plain GET: %q", got)
	}
	if got := run(dCA, d.URL+"/data"); got != "from-d" {
		t.Errorf("tunnelled GET: %q", got)
	}
	// With only the origin's certificate, curl must refuse the minted one.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "", "--proxy", px.URL, "--cacert",
		writeCertPEM(t, a.Certificate()), a.URL+"/data").CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "certificate") {
		t.Errorf("curl without the CA: err %v, output %q", err, out)
	}
}
