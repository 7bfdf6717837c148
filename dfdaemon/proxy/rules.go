package proxy

import (
	"net"
	"net/http"
	"net/url"
)

// route is what the rules decided for one request.
type route struct {
	target *url.URL // the URL to fetch, after use_https and redirect
	swarm  bool     // fetch it through the swarm
	rule   int      // index of the deciding rule, -1 when none matched
}

// decide applies the first rule whose regx matches u. Unlike v1, which
// rewrote only GETs, use_https and redirect apply to every method, so a HEAD
// or a POST reaches the same origin as the GET beside it; only a GET can go
// through the swarm.
func decide(rules []Rule, method string, u *url.URL) route {
	target := *u
	raw := u.String()
	for i, r := range rules {
		if !r.Regx.MatchString(raw) {
			continue
		}
		if r.UseHTTPS && target.Scheme == "http" {
			target.Scheme = "https"
			target.Host = dropDefaultPort(target.Host, "80")
		}
		if r.Redirect != "" {
			target.Host = r.Redirect
		}
		return route{target: &target, swarm: !r.Direct && method == http.MethodGet, rule: i}
	}
	return route{target: &target, rule: -1}
}

// hostPort is u's authority with the scheme's default port made explicit,
// the form hijack_https.hosts[].regx is matched against (as a CONNECT
// authority is).
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// dropDefaultPort removes port from authority when it is the given default,
// so "host:80" switched to https does not become "https://host:80".
func dropDefaultPort(authority, port string) string {
	h, p, err := net.SplitHostPort(authority)
	if err != nil || p != port {
		return authority
	}
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		return "[" + h + "]"
	}
	return h
}
