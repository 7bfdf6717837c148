package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
