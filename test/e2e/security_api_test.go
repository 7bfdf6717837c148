package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// (PEM) into dir; the certificate is its own CA.
func selfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "damselfly e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// A supernode with --tls-cert/--tls-key and --auth-token: its API speaks
// only HTTPS, refuses calls without the token (401 envelope) but /_ping,
// and dfget with --node-cacerts and --node-token (flags or properties)
// downloads through it; without the token or the CA it fails cleanly.
func TestSecurityTLSAndToken(t *testing.T) {
	o := newOrigin(t)
	data := randomData(6<<20+5, 61)
	url := o.add("/tls.bin", data)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	const token = "s3cret-token"
	sn := startSupernode(t, t.TempDir(), "--tls-cert", cert, "--tls-key", key, "--auth-token", token)

	hc := tlsClient(t, cert)
	base := "https://" + Addr(sn.api)
	get := func(path, auth string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if st, b := get("/_ping", ""); st != 200 || string(b) != "OK" {
		t.Fatalf("/_ping over TLS without token: %d %q", st, b)
	}
	for _, auth := range []string{"", "Bearer wrong", token, "Basic " + token} {
		st, b := get("/api/v1/peers", auth)
		var e types.ErrorResponse
		if st != http.StatusUnauthorized || json.Unmarshal(b, &e) != nil || e.Code != http.StatusUnauthorized || e.Message == "" {
			t.Errorf("auth %q: HTTP %d %s, want 401 envelope", auth, st, b)
		}
	}
	if st, b := get("/api/v1/peers", "Bearer "+token); st != 200 {
		t.Fatalf("with the token: HTTP %d %s", st, b)
	}
	// Plain HTTP to the TLS port is not served.
	if resp, err := http.Get("http://" + Addr(sn.api) + "/_ping"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on the TLS API port")
		}
	}

	p := newDfgetPeer(t, "127.0.0.2")
	out := t.TempDir()
	// The host's peer server is started by a dfget of a plain supernode,
	// with no token and no CA: the secured dfgets below reuse it.
	plain := startSupernode(t, t.TempDir())
	if r := p.run(plain, "-u", url, "-o", filepath.Join(out, "plain"), "--notbs"); r.code != 0 {
		t.Fatalf("dfget of the plain supernode: exit %d %s", r.code, r.stdout)
	}
	ok := filepath.Join(out, "ok")
	if r := p.run(sn, "-u", url, "-o", ok, "--notbs", "--node-cacerts", cert, "--node-token", token); r.code != 0 {
		t.Fatalf("dfget with CA and token: exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, ok, data)
	// Stream mode: the peer server, started without credentials, reports
	// the stream cache to this supernode over HTTPS with the token, which
	// the streaming dfget handed it with the stream task.
	var streamed []byte
	if r := p.stream(sn, func(rd io.Reader) { streamed, _ = io.ReadAll(rd) }, "-u", url, "--notbs",
		"--node-cacerts", cert, "--node-token", token); r.code != 0 || !bytes.Equal(streamed, data) {
		t.Fatalf("stream with CA and token: exit %d, %d bytes\n%s", r.code, len(streamed), r.stderr)
	}
	_, metrics := get("/metrics", "Bearer "+token)
	ok200 := regexp.MustCompile(`(?m)^dragonfly_supernode_http_requests_total\{code="200",handler="/peer/piece/stream"\} [1-9]`)
	if !ok200.Match(metrics) || bytes.Contains(metrics, []byte(`code="401",handler="/peer/piece/stream"`)) {
		t.Errorf("stream-cache reports from the peer server were not accepted:\n%s", grepLines(metrics, "/peer/piece/stream"))
	}
	props := filepath.Join(dir, "dfget.yml")
	if err := os.WriteFile(props, []byte("nodeToken: "+token+"\nnodeCACerts: ["+cert+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	viaProps := filepath.Join(out, "props")
	// The properties file replaces the --config of p.args: the last wins.
	if r := p.run(sn, "-u", url, "-o", viaProps, "--notbs", "--config", props); r.code != 0 {
		t.Fatalf("dfget with token and CA from properties: exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, viaProps, data)
	for name, extra := range map[string][]string{
		"no token":    {"--node-cacerts", cert},
		"wrong token": {"--node-cacerts", cert, "--node-token", "nope"},
		"no CA":       {"--node-token", token},
	} {
		dst := filepath.Join(out, strings.ReplaceAll(name, " ", "-"))
		r := p.run(sn, append([]string{"-u", url, "-o", dst, "--notbs"}, extra...)...)
		if r.code != 80 || !strings.Contains(r.stdout, "download FAIL") {
			t.Errorf("%s: exit %d %s", name, r.code, r.stdout)
		}
		noFile(t, dst)
	}
}

// --source-allow: registrations and preheats of sources on other hosts
// are refused with a clear message before the source is contacted;
// non-http schemes are refused always.
func TestSecuritySourceAllowList(t *testing.T) {
	o := newOrigin(t)
	data := randomData(1<<20, 62)
	allowed := o.add("/allowed.bin", data)
	sn := startSupernode(t, t.TempDir(), "--source-allow", "127.0.0.1,mirror.example")
	c := newClient(t, sn, "127.0.0.1-allow")
	if reg := c.register(c.registerReq(allowed)); reg.FileLength != int64(len(data)) {
		t.Fatalf("allowed source: %+v", reg)
	}
	other := strings.Replace(allowed, "127.0.0.1", "localhost", 1)
	for _, u := range []string{other, "ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://127.0.0.1/"} {
		status, body := c.registerRaw(c.registerReq(u))
		var e types.ErrorResponse
		if status != http.StatusInternalServerError || json.Unmarshal(body, &e) != nil || e.Code != types.CodeParamError {
			t.Errorf("register %s: HTTP %d %s, want 500 with code 501", u, status, body)
		}
	}
	if n := o.count("/allowed.bin", 200); n != 1 {
		t.Errorf("origin got %d full requests, want 1 (the refused host is the same server)", n)
	}
	resp, err := httpc.Post(sn.apiURL+"/preheats", "application/json", strings.NewReader(`{"type":"file","url":"`+other+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("preheat of a host outside the allow-list: HTTP %d, want 400", resp.StatusCode)
	}
	// An allowed host that redirects elsewhere does not take the CDN there.
	var hidden atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hidden.Add(1)
		_, _ = w.Write([]byte("internal"))
	}))
	defer target.Close()
	redir := httptest.NewServer(http.RedirectHandler(strings.Replace(target.URL, "127.0.0.1", "localhost", 1)+"/x", http.StatusFound))
	defer redir.Close()
	if status, body := c.registerRaw(c.registerReq(redir.URL + "/r")); status == http.StatusOK || hidden.Load() != 0 {
		t.Errorf("redirect out of the allow-list: HTTP %d %s, target hit %d times", status, body, hidden.Load())
	}
	// dfget falls back to the source when the supernode refuses, and fails
	// cleanly with --notbs.
	p := newDfgetPeer(t, "127.0.0.2")
	dst := filepath.Join(t.TempDir(), "out")
	if r := p.run(sn, "-u", other, "-o", dst, "--notbs"); r.code != 80 || !strings.Contains(r.stdout, "allow-list") {
		t.Errorf("dfget --notbs of a refused source: exit %d %s", r.code, r.stdout)
	}
	noFile(t, dst)
}

// grepLines returns the lines of b that contain s.
func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
