// Package netguard keeps the supernode's source fetches away from addresses
// that only make sense to the supernode's own host: loopback, link-local
// (which includes cloud metadata services at 169.254.169.254) and the
// unspecified address. Anyone who can reach the supernode API names the
// sources it fetches, and the fetched bytes can be read back from the piece
// port, so such a fetch is a request forgery into local services.
//
// The check runs on the address actually connected to (a net.Dialer Control
// function), after DNS resolution and for every redirect hop, so neither a
// host name that resolves to 127.0.0.1 nor DNS rebinding nor a redirect can
// get around it.
//
// The allow list (--source-allow) is shared with the host filter of the
// supernode API. Its entries are:
//   - a host name ("mirror.example", "localhost"): URLs of that host are
//     accepted and may connect to whatever the name resolves to, refused
//     classes included (the operator vouched for the name);
//   - an IP address ("127.0.0.1", "::1"): URLs with that address as host are
//     accepted, and connecting to that address is allowed whatever the URL;
//   - a CIDR prefix ("127.0.0.0/8", "fe80::/10"): the same for every address
//     in it.
//
// Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are not refused:
// internal origins are a normal deployment.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// RefusedError is a connection the guard refused.
type RefusedError struct {
	Addr  netip.Addr
	Class string // "loopback", "link-local" or "unspecified"
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("source address %s is refused: %s; allow it with --source-allow", e.Addr, e.Class)
}

// Class names the refused class of ip, or "" when ip may be used. An
// IPv4-mapped IPv6 address is judged as its IPv4 address.
func Class(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.IsLoopback(), ip.IsInterfaceLocalMulticast():
		return "loopback"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsUnspecified(), ip.Is4() && ip.As4()[0] == 0:
		// Linux connects 0.0.0.0/8 "this network" addresses to the host
		// itself.
		return "unspecified"
	}
	return ""
}

// ValidateEntry checks one allow-list entry: a host name, an IP address or
// a CIDR prefix, without scheme, port or credentials.
func ValidateEntry(s string) error {
	if _, _, ok := parseEntry(s); ok {
		return nil
	}
	return fmt.Errorf("invalid source-allow entry %q: want a host name, an IP address or a CIDR prefix, no scheme or port", s)
}

// parseEntry returns the entry's lower-case host name or its prefix.
func parseEntry(s string) (name string, p netip.Prefix, ok bool) {
	s = strings.TrimSpace(s)
	if pf, err := netip.ParsePrefix(s); err == nil {
		return "", netip.PrefixFrom(pf.Addr().Unmap(), bitsUnmapped(pf)).Masked(), true
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		ip = ip.Unmap()
		return "", netip.PrefixFrom(ip, ip.BitLen()), true
	}
	if s == "" || strings.ContainsAny(s, "/:@ []%?#\\") {
		return "", netip.Prefix{}, false
	}
	return strings.ToLower(s), netip.Prefix{}, true
}

// bitsUnmapped is a prefix length for the unmapped form of p's address:
// ::ffff:127.0.0.0/104 is 127.0.0.0/8.
func bitsUnmapped(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}

// Guard decides which hosts and addresses sources may use. The zero value
// is not usable; build one with New. A Guard is read-only after New.
type Guard struct {
	names    map[string]bool
	prefixes []netip.Prefix
	// proxies are the "host:port" of the proxies named by the environment;
	// a connection made to reach one of them for a proxied request is not
	// checked (the operator chose the proxy), the request's target is.
	proxies map[string]bool
	// lookup, when set, resolves host names before dialing (tests simulate
	// DNS with it); nil lets the dialer resolve.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// New returns the guard of an allow list. Invalid entries (refused earlier
// by ValidateEntry) are ignored, so they allow nothing.
func New(allow []string) *Guard {
	g := &Guard{names: map[string]bool{}, proxies: envProxies()}
	for _, s := range allow {
		name, p, ok := parseEntry(s)
		switch {
		case !ok:
		case name != "":
			g.names[name] = true
		default:
			g.prefixes = append(g.prefixes, p)
		}
	}
	return g
}

// Empty reports an empty allow list (every host accepted at registration).
func (g *Guard) Empty() bool { return len(g.names) == 0 && len(g.prefixes) == 0 }

// HostAllowed reports whether a URL host (as url.URL.Hostname returns it)
// is in the allow list; an empty list allows every host.
func (g *Guard) HostAllowed(host string) bool {
	if g.Empty() {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return g.addrListed(ip)
	}
	return g.names[strings.ToLower(host)]
}

func (g *Guard) addrListed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range g.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Check returns a *RefusedError when ip is of a refused class and the allow
// list does not name it. byName says the connection is for a host name the
// list names.
func (g *Guard) Check(ip netip.Addr, byName bool) error {
	c := Class(ip)
	if c == "" || byName || g.addrListed(ip) {
		return nil
	}
	return &RefusedError{Addr: ip.Unmap(), Class: c}
}

// control is the net.Dialer Control function: it sees the resolved address
// of every connection attempt.
func (g *Guard) control(byName bool) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("source address %q: %w", address, err)
		}
		return g.Check(ap.Addr(), byName)
	}
}

// proxyKey marks a request's context with the address of the proxy it goes
// through, so the dial to that proxy is told from a direct dial to the same
// address (ProxyFromEnvironment never proxies loopback targets, so a source
// at the proxy's own address is dialed directly and must be checked).
type proxyKey struct{}

// DialContext wraps d so that every connection it makes is checked. d must
// not have a Control function of its own.
func (g *Guard) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if via, _ := ctx.Value(proxyKey{}).(string); via != "" && via == addr && g.proxies[addr] {
			return d.DialContext(ctx, network, addr)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		guarded := *d
		guarded.Control = g.control(g.names[strings.ToLower(host)])
		if _, err := netip.ParseAddr(host); err == nil || g.lookup == nil {
			return guarded.DialContext(ctx, network, addr)
		}
		ips, err := g.lookup(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		err = fmt.Errorf("resolve %s: no address", host)
		for _, ip := range ips {
			var c net.Conn
			if c, err = guarded.DialContext(ctx, network, net.JoinHostPort(ip.String(), port)); err == nil {
				return c, nil
			}
		}
		return nil, err
	}
}

// Transport makes t check every connection it dials with d and returns
// the round tripper to use in its place: it also checks the target of each
// request t sends to a proxy from its Proxy function. t.DialContext is
// replaced.
func (g *Guard) Transport(t *http.Transport, d *net.Dialer) http.RoundTripper {
	t.DialContext = g.DialContext(d)
	return &guardedRT{g: g, t: t}
}

// checkTarget is the best effort for a request the proxy will connect: the
// proxy resolves the name itself, so only what this host resolves it to can
// be checked. A name this host cannot resolve is left to the proxy.
func (g *Guard) checkTarget(ctx context.Context, host string) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		return g.Check(ip, false)
	}
	if g.names[strings.ToLower(host)] {
		return nil
	}
	lookup := g.lookup
	if lookup == nil {
		lookup = func(ctx context.Context, h string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		}
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if err := g.Check(ip, false); err != nil {
			return err
		}
	}
	return nil
}

// guardedRT marks each proxied request with its proxy (see proxyKey) after
// checking its target.
type guardedRT struct {
	g *Guard
	t *http.Transport
}

func (m *guardedRT) RoundTrip(req *http.Request) (*http.Response, error) {
	if m.t.Proxy != nil {
		p, err := m.t.Proxy(req)
		if err != nil {
			return nil, fmt.Errorf("proxy for %s: %w", req.URL.Redacted(), err)
		}
		if p != nil {
			if err := m.g.checkTarget(req.Context(), req.URL.Hostname()); err != nil {
				return nil, err
			}
			req = req.WithContext(context.WithValue(req.Context(), proxyKey{}, canonicalAddr(p)))
		}
	}
	return m.t.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach t.
func (m *guardedRT) CloseIdleConnections() { m.t.CloseIdleConnections() }

// NewClient returns an http.Client whose every connection is checked: a
// clone of http.DefaultTransport (so proxies from the environment still
// apply) dialing with d.
func (g *Guard) NewClient(d *net.Dialer) *http.Client {
	return &http.Client{Transport: g.Transport(http.DefaultTransport.(*http.Transport).Clone(), d)}
}

// envProxies lists the proxy addresses the environment names, in the form
// the transport dials them.
func envProxies() map[string]bool {
	out := map[string]bool{}
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		v := os.Getenv(k)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			// "proxy:3128" without a scheme is taken as http, as net/http does.
			if u, err = url.Parse("http://" + v); err != nil {
				continue
			}
		}
		out[canonicalAddr(u)] = true
	}
	return out
}

// canonicalAddr is u's "host:port" with the scheme's default port.
func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// IsRefused reports whether err is (or wraps) a refusal of the guard.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}
