package proxy

import (
	"net/url"
	"testing"
)

func TestDecide(t *testing.T) {
	rules := []Rule{
		{Regx: mustRegexp(t, `no-proxy-reg`), Direct: true},
		{Regx: mustRegexp(t, `blobs/sha256:`)},
		{Regx: mustRegexp(t, `^http://plain-reg(:80)?/`), UseHTTPS: true},
		{Regx: mustRegexp(t, `old-reg`), Redirect: "new-reg:5000"},
		{Regx: mustRegexp(t, `tls-direct/`), UseHTTPS: true, Direct: true},
		{Regx: mustRegexp(t, `sig=`)},
	}
	for _, tc := range []struct {
		method, in string
		target     string
		swarm      bool
		rule       int
	}{
		// First match decides: the direct rule shadows the blob rule.
		{"GET", "http://no-proxy-reg/v2/a/blobs/sha256:1", "http://no-proxy-reg/v2/a/blobs/sha256:1", false, 0},
		{"GET", "http://reg/v2/a/blobs/sha256:1", "http://reg/v2/a/blobs/sha256:1", true, 1},
		// Only GETs go to the swarm; the rule still decides the target.
		{"HEAD", "http://reg/v2/a/blobs/sha256:1", "http://reg/v2/a/blobs/sha256:1", false, 1},
		{"POST", "http://plain-reg/v2/", "https://plain-reg/v2/", false, 2},
		{"GET", "http://plain-reg:80/v2/x", "https://plain-reg/v2/x", true, 2},
		{"GET", "http://old-reg/v2/x?q=1", "http://new-reg:5000/v2/x?q=1", true, 3},
		{"GET", "http://tls-direct/x", "https://tls-direct/x", false, 4},
		// The query is part of what regx sees.
		{"GET", "http://cdn/x?sig=abc", "http://cdn/x?sig=abc", true, 5},
		{"GET", "http://elsewhere/x", "http://elsewhere/x", false, -1},
		{"GET", "https://plain-reg/v2/", "https://plain-reg/v2/", false, -1},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got := decide(rules, tc.method, u)
		if got.target.String() != tc.target || got.swarm != tc.swarm || got.rule != tc.rule {
			t.Errorf("%s %s: target %s swarm %v rule %d; want %s %v %d",
				tc.method, tc.in, got.target, got.swarm, got.rule, tc.target, tc.swarm, tc.rule)
		}
		if u.String() != tc.in {
			t.Errorf("%s: decide changed the request URL to %s", tc.in, u)
		}
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"https://a/x":       "a:443",
		"http://a/x":        "a:80",
		"https://a:8443/x":  "a:8443",
		"https://[::1]/x":   "[::1]:443",
		"http://[::1]:80/x": "[::1]:80",
	} {
		u, _ := url.Parse(in)
		if got := hostPort(u); got != want {
			t.Errorf("hostPort(%s) = %s, want %s", in, got, want)
		}
	}
	if got := dropDefaultPort("[::1]:80", "80"); got != "[::1]" {
		t.Errorf("dropDefaultPort v6 = %s", got)
	}
	if got := dropDefaultPort("a:8080", "80"); got != "a:8080" {
		t.Errorf("dropDefaultPort kept port = %s", got)
	}
}
