package tlsconf

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// get fetches srv's root with the TLS settings of t.
func get(t *testing.T, srv *httptest.Server, trust Trust) error {
	t.Helper()
	cfg, err := trust.Config()
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(srv.URL)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func TestConfig(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := get(t, srv, Trust{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("system roots only: %v, want an unknown-authority error", err)
	}
	if err := get(t, srv, Trust{CAFiles: []string{caFile}}); err != nil {
		t.Errorf("with the server's CA file: %v", err)
	}
	if err := get(t, srv, Trust{Insecure: true}); err != nil {
		t.Errorf("insecure: %v", err)
	}
	cfg, err := Trust{CAFiles: []string{caFile}}.Config()
	if err != nil || cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
		t.Errorf("config %+v, %v: want TLS 1.2 minimum, verification on", cfg, err)
	}
}

func TestConfigBadFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, files := range map[string][]string{
		"missing": {filepath.Join(dir, "nope.pem")},
		"not PEM": {notPEM},
	} {
		if cfg, err := (Trust{CAFiles: files}).Config(); err == nil {
			t.Errorf("%s: config %+v, want an error", name, cfg)
		}
	}
}

func TestBaseURL(t *testing.T) {
	if got := BaseURL(nil, "10.0.0.1:8002"); got != "http://10.0.0.1:8002" {
		t.Errorf("without TLS: %s", got)
	}
	if got := BaseURL(&tls.Config{}, "[::1]:8002"); got != "https://[::1]:8002" {
		t.Errorf("with TLS: %s", got)
	}
}
