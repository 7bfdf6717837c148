package proxy

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/fwdbody"
	"github.com/damselfly-p2p/damselfly/pkg/httpidle"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// serveProxy handles one request whose URL is absolute: from a plain HTTP
// client, or from inside an intercepted TLS connection.
func (p *Proxy) serveProxy(w http.ResponseWriter, r *http.Request) {
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" {
		http.Error(w, "dfdaemon proxy: unsupported scheme "+r.URL.Scheme, http.StatusBadRequest)
		return
	}
	if r.URL.Host == "" {
		http.Error(w, "dfdaemon proxy: no host in the request URI", http.StatusBadRequest)
		return
	}
	if p.looped(r) {
		http.Error(w, "dfdaemon proxy: request loop (it came back through this proxy)", http.StatusLoopDetected)
		return
	}
	rt := decide(p.rules, r.Method, r.URL)
	log := p.log.WithField("url", urlutil.Redact(rt.target.String()))
	if rt.swarm {
		log.WithField("rule", rt.rule).Debug("proxy: GET through the swarm")
		p.met.request(routeSwarm)
		p.viaSwarm(w, r, rt.target)
		return
	}
	log.WithField("method", r.Method).Debug("proxy: forward directly")
	p.met.request(routeDirect)
	p.forward(w, r, rt.target)
}

// viaSwarm hands the GET to the swarm with only end-to-end headers, so the
// client's Authorization reaches the origin but no proxy credentials do.
func (p *Proxy) viaSwarm(w http.ResponseWriter, r *http.Request, target *url.URL) {
	out := r.Clone(r.Context())
	out.URL = target
	out.Host = target.Host
	out.RequestURI = ""
	removeHopByHop(out.Header)
	p.swarm.ServeGET(w, out, target, p.upstreamTrust(target))
}

// forward streams r to target and the answer back, without buffering
// either body: a standard library reverse proxy pointed at the URL the
// rules chose, which also drops hop-by-hop headers both ways.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, target *url.URL) {
	// A client that stops reading, or an origin that stops sending, must
	// not hold the other side and this handler forever: each write to the
	// client and each read of the origin's body gets the idle timeout, as
	// a tunnel's do.
	w = httpidle.New(w, p.idle)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = "" // the target's, which a redirect rule may have changed
			if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
				pr.Out.Header["X-Forwarded-For"] = prior
			}
			pr.SetXForwarded()
			pr.Out.Header.Del("X-Forwarded-Host")  // a forward proxy keeps the
			pr.Out.Header.Del("X-Forwarded-Proto") // origin's own Host and scheme
			addVia(pr.Out.Header, pr.In.ProtoMajor, pr.In.ProtoMinor, p.via)
			fwdbody.Bound(pr.Out) // so a response already started cannot cut the forward
		},
		ModifyResponse: func(resp *http.Response) error {
			addVia(resp.Header, resp.ProtoMajor, resp.ProtoMinor, p.via)
			return nil
		},
		Transport:    httpidle.Transport{Base: p.transportFor(target), Idle: p.idle},
		ErrorHandler: p.forwardError,
		ErrorLog:     newStdLogger(p),
	}
	rp.ServeHTTP(w, r)
}

// forwardError answers a failed forward: 504 for a timeout, 502 otherwise.
// A client that went away gets nothing; it is not an origin failure.
func (p *Proxy) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		p.log.WithError(err).Debug("proxy: client went away")
		return
	}
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	p.log.WithError(err).WithField("url", urlutil.Redact(r.URL.String())).Warn("proxy: forward failed")
	http.Error(w, "dfdaemon proxy: "+urlutil.Redact(err.Error()), status)
}

func addVia(h http.Header, major, minor int, name string) {
	v := "1.1 " + name
	if major == 1 && minor == 0 {
		v = "1.0 " + name
	} else if major >= 2 {
		v = "2 " + name
	}
	if prior := h.Values("Via"); len(prior) > 0 {
		v = strings.Join(prior, ", ") + ", " + v
	}
	h.Set("Via", v)
}

// removeHopByHop drops the headers that belong to one connection (RFC 9110
// 7.6.1), those named by Connection, and the de facto Proxy-Connection.
func removeHopByHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		h.Del(name)
	}
}

// logWriter sends the reverse proxy's own log lines (body copy errors,
// mostly clients hanging up) to the debug log.
type logWriter struct{ p *Proxy }

func newStdLogger(p *Proxy) *log.Logger { return log.New(logWriter{p}, "", 0) }

func (l logWriter) Write(b []byte) (int, error) {
	l.p.log.Debug("proxy: " + strings.TrimSpace(string(b)))
	return len(b), nil
}
