package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/damselfly-p2p/damselfly/dfdaemon/ca"
	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
)

// certSource returns the certificate presented to a client for host.
type certSource func(host string) (*tls.Certificate, error)

// hostTLS is one compiled hijack_https.hosts entry: how to verify that
// host's certificate, and a transport that does so.
type hostTLS struct {
	regx  *regexp.Regexp
	trust tlsconf.Trust
	rt    *http.Transport
}

// setupHijack loads the CA and each host's extra roots. The host entries
// apply to every HTTPS request to a matching host, intercepted or not, so
// a use_https rule gets the same verification as a CONNECT.
func (p *Proxy) setupHijack(opts Options, dial time.Duration) error {
	h := opts.Hijack
	if h == nil {
		return nil
	}
	base, ok := p.direct.(*http.Transport)
	if !ok {
		base = newTransport(dial, p.hsTime, p.idle)
	}
	for i, host := range h.Hosts {
		trust := tlsconf.Trust{CAFiles: host.Certs, Insecure: host.Insecure}
		cfg, err := trust.Config()
		if err != nil {
			return fmt.Errorf("hijack_https.hosts[%d]: %w", i, err)
		}
		rt := base.Clone()
		rt.TLSClientConfig = cfg
		p.hosts = append(p.hosts, hostTLS{regx: host.Regx.Regexp, trust: trust, rt: rt})
	}
	if !h.enabled() {
		if len(h.Hosts) > 0 {
			p.log.Warn("hijack_https: no cert and key, so CONNECT is tunnelled and nothing is intercepted")
		}
		return nil
	}
	src, err := loadCerts(h.Cert, h.Key, opts.CertCacheSize, p)
	if err != nil {
		return fmt.Errorf("hijack_https: %w", err)
	}
	p.certs = src
	return nil
}

// loadCerts reads the key pair. A CA signs a leaf per host; any other
// certificate, as some v1 setups made with openssl, is served as it is.
func loadCerts(certFile, keyFile string, cacheSize int, p *Proxy) (certSource, error) {
	kp, err := ca.Load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if !kp.IsCA() {
		p.log.Warnf("hijack_https: %s is not a CA certificate; it is presented for every intercepted host (make a CA with `dfdaemon gen-ca`)", certFile)
		static := kp.TLS
		return func(string) (*tls.Certificate, error) { return &static, nil }, nil
	}
	if cacheSize <= 0 {
		cacheSize = DefaultCertCacheSize
	}
	is, err := ca.NewIssuer(kp, cacheSize)
	if err != nil {
		return nil, err
	}
	return is.Leaf, nil
}

// hostFor returns the hijack_https.hosts entry matching authority
// (host:port), first match first, or nil.
func (p *Proxy) hostFor(authority string) *hostTLS {
	for i := range p.hosts {
		if p.hosts[i].regx.MatchString(authority) {
			return &p.hosts[i]
		}
	}
	return nil
}

// transportFor picks the transport for a direct fetch of target.
func (p *Proxy) transportFor(target *url.URL) http.RoundTripper {
	if target.Scheme == "https" {
		if h := p.hostFor(hostPort(target)); h != nil {
			return h.rt
		}
	}
	return p.direct
}

// upstreamTrust is how hijack_https says to verify target's host (its
// certs, insecure), or the zero Trust (system roots) when no entry
// matches. The swarm's fetches of target use it, so they verify such a
// host as the proxy's own direct fetches do.
func (p *Proxy) upstreamTrust(target *url.URL) tlsconf.Trust {
	if target.Scheme == "https" {
		if h := p.hostFor(hostPort(target)); h != nil {
			return h.trust
		}
	}
	return tlsconf.Trust{}
}
