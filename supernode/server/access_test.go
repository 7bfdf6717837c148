package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRequireToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	if requireToken("", ok) == nil {
		t.Fatal("nil handler")
	}
	h := requireToken("tok", ok)
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/_ping", "", http.StatusTeapot},
		{"/v1.24/_ping", "", http.StatusTeapot},
		{"/_ping/x", "", http.StatusUnauthorized},
		{"/x/_ping", "", http.StatusUnauthorized},
		{"/peer/registry", "", http.StatusUnauthorized},
		{"/peer/registry", "Bearer tok", http.StatusTeapot},
		{"/peer/registry", "Bearer tok ", http.StatusUnauthorized},
		// The scheme is case-insensitive (RFC 9110 section 11.1).
		{"/peer/registry", "bearer tok", http.StatusTeapot},
		{"/peer/registry", "BEARER  tok", http.StatusTeapot},
		{"/peer/registry", "Bearer", http.StatusUnauthorized},
		{"/peer/registry", "Bearer ", http.StatusUnauthorized},
		{"/peer/registry", "Bearertok", http.StatusUnauthorized},
		{"/peer/registry", "Basic tok", http.StatusUnauthorized},
		{"/peer/registry", "tok", http.StatusUnauthorized},
		{"/metrics", "Bearer other", http.StatusUnauthorized},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s %q: %d, want %d", tc.path, tc.auth, w.Code, tc.want)
		}
	}
	w := httptest.NewRecorder()
	requireToken("", ok).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/peer/task", nil))
	if w.Code != http.StatusTeapot {
		t.Errorf("no token configured: %d", w.Code)
	}
}

func TestSourceAllowed(t *testing.T) {
	allow := []string{"Mirror.Example", "10.0.0.7"}
	for raw, want := range map[string]bool{
		"http://mirror.example/f":       true,
		"https://MIRROR.example:8443/f": true,
		"http://10.0.0.7/x":             true,
		"http://10.0.0.8/x":             false,
		"http://mirror.example.evil/f":  false,
		"http://evil/mirror.example":    false,
		"ftp://mirror.example/f":        false,
		"http://u:p@evil/?h=10.0.0.7":   false,
	} {
		if got := sourceAllowed(allow, raw) == nil; got != want {
			t.Errorf("%s: allowed=%v, want %v", raw, got, want)
		}
	}
	if sourceAllowed(nil, "http://anything/") != nil {
		t.Error("an empty list must allow any host")
	}
}
