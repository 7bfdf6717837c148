package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/damselfly-p2p/damselfly/dfdaemon/ca"
	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
)

// testCA makes a CA with gen-ca's code and returns its files and a pool
// that trusts it.
func testCA(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.Generate(certFile, keyFile, ca.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(kp.Cert)
	return certFile, keyFile, pool
}

func writeCertPEM(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "server.crt")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func authorityRegx(t *testing.T, rawURL string) *Regexp {
	u, _ := url.Parse(rawURL)
	return mustRegexp(t, "^"+regexp.QuoteMeta(u.Host)+"$")
}

func TestHijack(t *testing.T) {
	payload := randomBytes(256 << 10)
	a := tlsOrigin(t, "a", payload) // intercepted, verified with certs
	b := tlsOrigin(t, "b", payload) // intercepted, insecure
	c := tlsOrigin(t, "c", payload) // intercepted, no way to verify it
	d := tlsOrigin(t, "d", payload) // not listed: tunnelled
	certFile, keyFile, caPool := testCA(t)
	aCert := writeCertPEM(t, a.Certificate())
	swarm := newRecorder(t)
	reg := prometheus.NewRegistry()
	p, px := startProxy(t, Options{
		Registerer: reg,
		Swarm:      swarm,
		Rules:      []Rule{{Regx: mustRegexp(t, `/blobs/sha256:`)}},
		Hijack: &HijackConfig{Cert: certFile, Key: keyFile, Hosts: []HijackHost{
			{Regx: authorityRegx(t, a.URL), Certs: []string{aCert}},
			{Regx: authorityRegx(t, b.URL), Insecure: true},
			{Regx: authorityRegx(t, c.URL)},
		}},
	})
	base := runtime.NumGoroutine()
	// The client trusts dfdaemon's CA and d's own certificate, nothing else.
	caPool.AddCert(d.Certificate())
	client := proxyClient(px.URL, &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}})

	get := func(method, rawURL string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, rawURL, strings.NewReader("up"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, rawURL, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: reading the body: %v after %d bytes", method, rawURL, err, len(body))
		}
		return resp, string(body)
	}
	issuer := func(resp *http.Response) string { return resp.TLS.PeerCertificates[0].Issuer.CommonName }

	blob := a.URL + "/v2/lib/x/blobs/sha256:0123"
	resp, body := get("GET", blob)
	if body != "swarm:"+blob || !strings.HasPrefix(issuer(resp), "dfdaemon CA") {
		t.Errorf("blob GET in an intercepted connection: %q (issuer %q), want the swarm", body, issuer(resp))
	}
	resp, body = get("GET", a.URL+"/data")
	if resp.Header.Get("X-Origin") != "a" || body != string(payload) {
		t.Errorf("non-matching GET: origin %q, %d bytes", resp.Header.Get("X-Origin"), len(body))
	}
	resp, _ = get("POST", a.URL+"/v2/lib/x/blobs/sha256:0123")
	if resp.Header.Get("X-Origin") != "a" || resp.Header.Get("X-Path") != "/v2/lib/x/blobs/sha256:0123" {
		t.Errorf("POST went to %q %q, want the origin", resp.Header.Get("X-Origin"), resp.Header.Get("X-Path"))
	}
	if resp, _ = get("GET", b.URL+"/data"); resp.Header.Get("X-Origin") != "b" || !strings.HasPrefix(issuer(resp), "dfdaemon CA") {
		t.Errorf("insecure host: %s from %q", resp.Status, resp.Header.Get("X-Origin"))
	}
	if resp, _ = get("GET", c.URL+"/data"); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("unverifiable upstream: %s, want 502", resp.Status)
	}
	resp, body = get("GET", d.URL+"/v2/lib/x/blobs/sha256:0123")
	if resp.Header.Get("X-Origin") != "d" || !resp.TLS.PeerCertificates[0].Equal(d.Certificate()) {
		t.Errorf("unlisted host was not tunnelled: origin %q", resp.Header.Get("X-Origin"))
	}
	// The swarm's fetches of a hijacked host trust it as its entry says.
	for _, o := range []string{b.URL, c.URL} {
		if _, body = get("GET", o+"/v2/lib/x/blobs/sha256:0123"); body != "swarm:"+o+"/v2/lib/x/blobs/sha256:0123" {
			t.Errorf("blob GET of %s: %q, want the swarm", o, body)
		}
	}
	calls := swarm.got()
	want := []tlsconf.Trust{{CAFiles: []string{aCert}}, {Insecure: true}, {}}
	if len(calls) != len(want) {
		t.Fatalf("swarm got %d GETs, want %d", len(calls), len(want))
	}
	for i, call := range calls {
		if !reflect.DeepEqual(call.trust, want[i]) {
			t.Errorf("swarm GET of %s: trust %+v, want %+v", call.target, call.trust, want[i])
		}
	}
	client.CloseIdleConnections()
	p.closeIdle() // the proxy's own keep-alive connections to a and b
	waitGoroutines(t, base)

	// One connection per host (keep-alive), one request per route.
	for route, want := range map[string]float64{routeSwarm: 3, routeDirect: 4, routeIntercept: 3, routeTunnel: 1} {
		if got := metricValue(t, p.met.requests.WithLabelValues(route)); got != want {
			t.Errorf("requests{route=%s} = %v, want %v", route, got, want)
		}
		if open := metricValue(t, p.met.open.WithLabelValues(route)); open != 0 {
			t.Errorf("connections{route=%s} = %v after every client left", route, open)
		}
	}
	if _, err := New(Options{Registerer: reg, Logger: quietLogger()}); err == nil {
		t.Error("a second proxy registered the same collectors without error")
	}
}

func TestHijackUntrustedClient(t *testing.T) {
	a := tlsOrigin(t, "a", nil)
	certFile, keyFile, _ := testCA(t)
	_, px := startProxy(t, Options{Hijack: &HijackConfig{Cert: certFile, Key: keyFile,
		Hosts: []HijackHost{{Regx: authorityRegx(t, a.URL), Insecure: true}}}})
	base := runtime.NumGoroutine()
	// Trusts the origin but not dfdaemon's CA: interception must show.
	client := proxyClient(px.URL, a.Client().Transport.(*http.Transport).Clone())
	_, err := client.Get(a.URL + "/data")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client without the CA: %v, want a certificate error", err)
	}
	client.CloseIdleConnections()
	waitGoroutines(t, base)
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

// TestHijackStaticCert: a v1 setup whose hijack cert is a plain server
// certificate, not a CA, still works: that certificate is presented.
func TestHijackStaticCert(t *testing.T) {
	a := tlsOrigin(t, "a", nil)
	caCert, caKey, pool := testCA(t)
	kp, _ := ca.Load(caCert, caKey)
	is, _ := ca.NewIssuer(kp, 1)
	leaf, err := is.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "df.crt"), filepath.Join(dir, "df.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	_, px := startProxy(t, Options{Hijack: &HijackConfig{Cert: certFile, Key: keyFile,
		Hosts: []HijackHost{{Regx: authorityRegx(t, a.URL), Insecure: true}}}})
	client := proxyClient(px.URL, &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}})
	defer client.CloseIdleConnections()
	resp, err := client.Get(a.URL + "/data")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !resp.TLS.PeerCertificates[0].Equal(leaf.Leaf) || resp.Header.Get("X-Origin") != "a" {
		t.Error("the static hijack certificate was not the one presented")
	}
}
