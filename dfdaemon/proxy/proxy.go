// Package proxy is dfdaemon's HTTP(S) forward proxy. Requests in proxy form
// (an absolute URI) follow dfdaemon.yml's `proxies` rules: the first rule
// whose regx matches the URL decides, and a GET of a matching rule that is
// not direct is served by the swarm. Everything else is forwarded to the
// origin as a streaming forward proxy. CONNECT opens a TCP tunnel, or, for
// hosts listed under `hijack_https`, terminates TLS with a certificate from
// dfdaemon's CA and serves the requests inside through the same rules.
package proxy

//go:generate go tool mockgen -source=proxy.go -destination=mock_swarm_test.go -package=proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
)

// Swarm serves one GET through the P2P swarm: it writes the whole response
// (status, headers, body) for target to w. r carries the client's context
// and end-to-end headers (hop-by-hop ones removed); r.URL is target. The
// swarm's own fetches of target verify it as trust says: the
// hijack_https.hosts entry of target's host, if any.
type Swarm interface {
	ServeGET(w http.ResponseWriter, r *http.Request, target *url.URL, trust tlsconf.Trust)
}

// Defaults of the Options timeouts.
const (
	DefaultDialTimeout      = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultCertCacheSize    = 100
)

// Options configures New. Only Swarm is required, and only when a rule may
// send requests to it.
type Options struct {
	Rules  []Rule        // dfdaemon.yml `proxies`
	Hijack *HijackConfig // dfdaemon.yml `hijack_https`; nil tunnels every CONNECT
	Swarm  Swarm

	// Transport carries direct traffic. Nil means a transport that ignores
	// the proxy environment (it would point back here), does not add or
	// undo compression, and uses DialTimeout, HandshakeTimeout and, for
	// the wait for response headers, IdleTimeout. When it is an
	// *http.Transport, hosts under hijack_https use clones of it with
	// their TLS settings.
	Transport http.RoundTripper

	DialTimeout      time.Duration // CONNECT dials and the default transport's; default 10s
	IdleTimeout      time.Duration // a tunnel or intercepted connection with no traffic; default 5m
	HandshakeTimeout time.Duration // TLS handshakes, with clients and origins; default 10s
	CertCacheSize    int           // minted leaf certificates kept; default 100

	Logger logrus.FieldLogger // default logrus.StandardLogger()

	// Via is the pseudonym the proxy adds to Via headers and refuses a
	// request that already carries ("": a random one). dfdaemon gives it
	// the swarm's (swarm.Swarm.Via), so a swarm request that comes back
	// through the proxy is caught as a loop too.
	Via string

	// Registerer, when set, receives the proxy's collectors:
	// dragonfly_dfdaemon_proxy_requests_total{route} and
	// dragonfly_dfdaemon_proxy_connections{route}.
	Registerer prometheus.Registerer
}

// Proxy is an http.Handler for proxy-form requests and CONNECT. Use
// IsProxyRequest to route to it; Close ends the tunnels and intercepted
// connections it holds, which http.Server.Shutdown does not track.
type Proxy struct {
	rules  []Rule
	swarm  Swarm
	direct http.RoundTripper
	hosts  []hostTLS   // compiled hijack_https.hosts, in order
	certs  certSource  // nil: CONNECT is never intercepted
	dialer *net.Dialer // for tunnels
	idle   time.Duration
	hsTime time.Duration
	log    logrus.FieldLogger
	via    string // our Via pseudonym, also used to detect loops
	met    *metrics

	ctx    context.Context // ends intercepted connections on Close
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]struct{} // hijacked connections in use
	closed bool
}

// New validates opts, loads the hijack CA and extra roots, and returns the
// proxy. A bad rule, a missing or unreadable certificate file, or a missing
// Swarm for swarm rules is an error.
func New(opts Options) (*Proxy, error) {
	if err := ValidateRules(opts.Rules); err != nil {
		return nil, err
	}
	if err := opts.Hijack.Validate(); err != nil {
		return nil, err
	}
	if opts.Swarm == nil {
		for i, r := range opts.Rules {
			if !r.Direct {
				return nil, fmt.Errorf("proxies[%d] (%s) sends GETs to the swarm, but no swarm is set", i, r.Regx)
			}
		}
	}
	p := &Proxy{
		rules:  opts.Rules,
		swarm:  opts.Swarm,
		idle:   orDefault(opts.IdleTimeout, DefaultIdleTimeout),
		hsTime: orDefault(opts.HandshakeTimeout, DefaultHandshakeTimeout),
		log:    opts.Logger,
		conns:  map[net.Conn]struct{}{},
	}
	if p.log == nil {
		p.log = logrus.StandardLogger()
	}
	dial := orDefault(opts.DialTimeout, DefaultDialTimeout)
	p.dialer = &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	p.direct = opts.Transport
	if p.direct == nil {
		p.direct = newTransport(dial, p.hsTime, p.idle)
	}
	if err := p.setupHijack(opts, dial); err != nil {
		return nil, err
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	p.met = met
	p.via = opts.Via
	if p.via == "" {
		p.via = "dfdaemon-" + randomHex(4)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics on a broken system source)
	return hex.EncodeToString(b)
}

// newTransport is the default transport for direct traffic. An origin gets
// the idle timeout to start answering: long enough for a registry that
// checks a large pushed blob before it replies.
func newTransport(dial, handshake, idle time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The daemon's own HTTP(S)_PROXY often points at this very proxy.
	t.Proxy = nil
	t.DialContext = (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = handshake
	t.ResponseHeaderTimeout = idle
	// A proxy passes bodies as they are: transparent gzip would change the
	// bytes and drop Content-Length.
	t.DisableCompression = true
	t.MaxIdleConnsPerHost = 16
	return t
}

// IsProxyRequest reports whether r is for the proxy rather than for the
// daemon's own routes (registry mirror, /metrics): a CONNECT or a request
// whose target is an absolute URI.
func IsProxyRequest(r *http.Request) bool {
	return r.Method == http.MethodConnect || r.URL.IsAbs()
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		p.serveConnect(w, r)
	case r.URL.IsAbs():
		p.serveProxy(w, r)
	default:
		http.Error(w, "dfdaemon proxy: not a proxy request (want an absolute URI or CONNECT)", http.StatusBadRequest)
	}
}

// Close ends every tunnel and intercepted connection and refuses new ones.
// Requests in proxy form still being served end with their clients.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	p.cancel()
	for c := range conns {
		c.Close()
	}
	p.closeIdle()
	return nil
}

// closeIdle drops the pooled keep-alive connections to origins.
func (p *Proxy) closeIdle() {
	type idleCloser interface{ CloseIdleConnections() }
	if t, ok := p.direct.(idleCloser); ok {
		t.CloseIdleConnections()
	}
	for _, h := range p.hosts {
		h.rt.CloseIdleConnections()
	}
}

// track registers hijacked connections so Close can end them; it fails
// once the proxy is closed. The returned func unregisters and closes them.
func (p *Proxy) track(cs ...net.Conn) (release func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("proxy closed")
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return func() {
		p.mu.Lock()
		for _, c := range cs {
			delete(p.conns, c)
		}
		p.mu.Unlock()
		for _, c := range cs {
			c.Close()
		}
	}, nil
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// looped reports whether r already passed through this proxy, which
// happens when the origin resolves back to dfdaemon.
func (p *Proxy) looped(r *http.Request) bool {
	for _, v := range r.Header.Values("Via") {
		if strings.Contains(v, p.via) {
			return true
		}
	}
	return false
}
