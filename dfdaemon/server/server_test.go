package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/dfdaemon/ca"
)

func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })
}

func TestRouting(t *testing.T) {
	with := &Handler{Mirror: named("mirror"), Proxy: named("proxy"), Metrics: MetricsHandler(NewRegistry())}
	without := &Handler{Mirror: named("mirror"), Metrics: MetricsHandler(NewRegistry())}
	for _, tc := range []struct {
		h            *Handler
		method, uri  string
		code         int
		bodyContains string
	}{
		{with, "CONNECT", "registry.example:443", 200, "proxy"},
		{with, "GET", "http://files.example/a.tar", 200, "proxy"},
		{without, "CONNECT", "registry.example:443", 405, "no HTTP proxy"},
		{without, "GET", "http://files.example/a.tar", 405, "no HTTP proxy"},
		{with, "GET", "/v2/library/alpine/manifests/latest", 200, "mirror"},
		{with, "GET", "/_ping", 200, "OK"},
		{with, "GET", "/debug/version", 200, `"Version"`},
		{with, "GET", "/metrics", 200, "dragonfly_dfdaemon_build_info"},
	} {
		r := httptest.NewRequest(tc.method, tc.uri, nil)
		w := httptest.NewRecorder()
		tc.h.ServeHTTP(w, r)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.bodyContains) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.uri, w.Code, w.Body.String(), tc.code, tc.bodyContains)
		}
	}
}

func TestServeTLSWithLoadedPair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := ca.Generate(certFile, keyFile, ca.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // a failure below must not leave Serve running
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, &Handler{Mirror: named("mirror")}, &pair, time.Second) }()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Get("https://" + l.Addr().String() + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d, TLS %v: want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	hc.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
