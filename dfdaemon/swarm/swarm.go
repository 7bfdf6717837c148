// Package swarm turns one HTTP GET into an in-process stream download
// through the Dragonfly swarm (dfget's core as a library), served to the
// client as the bytes arrive: bounded memory (the stream window), the
// length known before the first byte, a fallback to the source at the
// byte where the swarm stopped, and, for a content-addressed blob, its
// sha256 checked before the last byte leaves. Requests it does not take
// (not a GET, a Range, a source that refuses the HEAD) are forwarded to
// the source as they are.
package swarm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/fwdbody"
	"github.com/damselfly-p2p/damselfly/pkg/gate"
	"github.com/damselfly-p2p/damselfly/pkg/httpidle"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/rate"
	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
)

// Options configure a Swarm: what every download gets.
type Options struct {
	// Nodes are the supernodes; empty means dfget's (its properties
	// file, else 127.0.0.1:8002).
	Nodes nodes.List
	// Home is the work home shared with dfget: its peer server, logs.
	Home string
	// IP is the address peers reach this host on ("": found by probing
	// the supernodes, as dfget does).
	IP string
	// RateLimit bounds each download and the host's uploads (0: none).
	RateLimit rate.Rate
	// Properties are dfget's properties (its /etc/dragonfly/dfget.yml),
	// which apply to every download as they did to v1's dfget processes.
	// The caller reads them once (dfgetcfg.ReadProperties), at startup:
	// a file that is malformed must stop dfdaemon there, not fail every
	// download.
	Properties dfgetcfg.Properties
	// ServerExecutable is the dfget binary started as the peer server
	// when none runs for Home ("": this executable).
	ServerExecutable string
	// WriteIdle is how long a write to a client may block before the
	// client is taken for gone and its download stopped (0:
	// DefaultWriteIdle). The server has no write timeout, as a layer
	// streams as long as it takes; this bounds a client that keeps its
	// connection open but stopped reading.
	WriteIdle time.Duration
	// SourceIdle is how long a read of a forwarded answer's body may
	// wait for the source (0: DefaultSourceIdle). A source that stops
	// sending mid-body is then cut off and the client's answer aborted,
	// instead of both being held for as long as the client waits.
	SourceIdle time.Duration
	// MaxStreams caps the stream downloads in flight (0: no cap). Each
	// holds its own window, fetch queue and stream cache ring, even when
	// another stream downloads the same blob, so memory grows with the
	// streams at once, not with their size: a GET past the cap waits for
	// a slot, first come first served (slots.go).
	MaxStreams int
	// StreamWait bounds a GET's wait for a stream slot (0:
	// DefaultStreamWait); past it the GET is forwarded to the source.
	StreamWait time.Duration
	// Via is the pseudonym this dfdaemon's proxy recognises in Via
	// headers ("": a random one; see Swarm.Via). Every request the swarm
	// sends a source carries it, so one that comes back through the proxy
	// is refused as a loop.
	Via     string
	Verbose bool
	Log     *logrus.Logger
	Metrics *Metrics
}

// DefaultWriteIdle is Options.WriteIdle's default: far longer than a
// healthy client's pause (an engine unpacking a layer still reads), far
// shorter than forever.
const DefaultWriteIdle = 2 * time.Minute

// DefaultSourceIdle is Options.SourceIdle's default: the same bound as
// for a client, for the other side of a forward.
const DefaultSourceIdle = DefaultWriteIdle

// DefaultStreamWait is Options.StreamWait's default: time for the streams
// ahead to end (three layers of a few hundred MiB at 20 MB/s take 10 to 30
// s each), well inside the engines' own patience (containerd's CRI gives up
// on a pull without progress after 5 minutes).
const DefaultStreamWait = time.Minute

// Source is where a GET goes when the swarm does not serve it, and where
// the swarm's CDN and fallback read it: the URL and how to trust it.
type Source struct {
	URL      *url.URL
	CACerts  []string
	Insecure bool
}

// Identity is what names a download's task. With Digest
// ("sha256:<hex>") the task is the content, whatever URL served it, and
// the bytes are checked against it; else the task is TaskURL (""
// means the source URL). With ByURL, a Digest is checked but the task is
// the source URL and the digest: shared only by clients of that URL.
type Identity struct {
	Digest  string
	TaskURL string
	ByURL   bool
}

// Swarm serves GETs through the swarm.
type Swarm struct {
	opt Options
	log *logrus.Logger
	m   *Metrics
	// slots caps the streams in flight (nil: no cap).
	slots *gate.Gate

	mu      sync.Mutex
	clients map[string]*http.Client // by TLS settings
	warmed  map[string]time.Time    // digest -> when Warm started its fill
	seq     uint64
}

// New returns a Swarm.
func New(opt Options) *Swarm {
	log := opt.Log
	if log == nil {
		log = logrus.New()
	}
	m := opt.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	if opt.WriteIdle <= 0 {
		opt.WriteIdle = DefaultWriteIdle
	}
	if opt.SourceIdle <= 0 {
		opt.SourceIdle = DefaultSourceIdle
	}
	if opt.StreamWait <= 0 {
		opt.StreamWait = DefaultStreamWait
	}
	var slots *gate.Gate
	if opt.MaxStreams > 0 {
		slots = gate.New(opt.MaxStreams, nil, m.Waiting)
	}
	if opt.Via == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b) // never fails (crypto/rand panics on a broken system source)
		opt.Via = "dfdaemon-" + hex.EncodeToString(b)
	}
	return &Swarm{opt: opt, log: log, m: m, slots: slots, clients: map[string]*http.Client{}, warmed: map[string]time.Time{}}
}

// Via is the pseudonym the swarm's source requests carry in their Via
// header: give it to the proxy (proxy.Options.Via) so it refuses them
// if they come back.
func (s *Swarm) Via() string { return s.opt.Via }

// sourceHeaders are the headers of the swarm's requests to a source for
// the client's h: SourceHeaders, plus this dfdaemon's Via.
func (s *Swarm) sourceHeaders(h http.Header) http.Header {
	out := SourceHeaders(h)
	addVia(out, s.opt.Via)
	return out
}

// addVia appends name as the last hop of h's Via.
func addVia(h http.Header, name string) {
	v := "1.1 " + name
	if prior := h.Values("Via"); len(prior) > 0 {
		v = strings.Join(prior, ", ") + ", " + v
	}
	h.Set("Via", v)
}

// refuseLoop answers 508 to r if it is one of this swarm's own requests to
// a source come back (its Via names this dfdaemon): a source that leads
// back to dfdaemon, such as a registry_mirror.remote naming its own port
// or a registry name resolved to its host, would otherwise have every
// request forwarded to itself again, a connection and a goroutine per
// hop, until the process runs out of descriptors.
func (s *Swarm) refuseLoop(w http.ResponseWriter, r *http.Request) bool {
	for _, v := range r.Header.Values("Via") {
		if strings.Contains(v, s.opt.Via) {
			s.log.Warnf("%s %s came back through this dfdaemon (Via %q): its source leads to dfdaemon itself",
				r.Method, r.URL.Redacted(), v)
			http.Error(w, "dfdaemon: request loop (it came back to this dfdaemon: does the registry lead to it?)",
				http.StatusLoopDetected)
			return true
		}
	}
	return false
}

// headTimeout bounds the HEAD that learns a source's length.
const headTimeout = 30 * time.Second

// ServeGET answers r, a GET of src, through the swarm under id: the
// response streams while the swarm downloads. When r is not a plain GET,
// or the source does not answer its HEAD with 200, the request is
// forwarded to the source as it is, so the client sees the source's own
// answer (an auth challenge, a 404).
func (s *Swarm) ServeGET(w http.ResponseWriter, r *http.Request, src Source, id Identity) {
	if s.refuseLoop(w, r) {
		return
	}
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" {
		s.Forward(w, r, src)
		return
	}
	if id.Digest != "" && !ValidDigest(id.Digest) {
		http.Error(w, "dfdaemon: unsupported digest "+id.Digest, http.StatusBadRequest)
		return
	}
	head, err := s.head(r.Context(), r, src)
	if err != nil {
		s.log.Infof("HEAD %s: %v; forwarding the GET", src.URL.Redacted(), err)
		s.Forward(w, r, src)
		return
	}
	if head.StatusCode != http.StatusOK || head.ContentLength == 0 {
		// An empty blob is not worth a task; any other answer is the
		// source's to give.
		s.Forward(w, r, src)
		return
	}
	s.stream(w, r, src, id, head)
}

// head asks the source for the length with the client's headers (its
// credentials), following redirects as the GET would.
func (s *Swarm) head(ctx context.Context, r *http.Request, src Source) (*http.Response, error) {
	hc, err := s.client(src)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, headTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, src.URL.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header = s.sourceHeaders(r.Header)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// Forward proxies r to src unchanged (method, headers, body), streaming
// the answer back. Redirects are the client's to follow.
func (s *Swarm) Forward(w http.ResponseWriter, r *http.Request, src Source) {
	if s.refuseLoop(w, r) {
		return
	}
	s.m.Forwarded.Inc()
	w = httpidle.New(w, s.opt.WriteIdle)
	hc, err := s.client(src)
	if err != nil {
		http.Error(w, "dfdaemon: "+err.Error(), http.StatusBadGateway)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = src.URL
			pr.Out.Host = ""
			pr.SetXForwarded()
			addVia(pr.Out.Header, s.opt.Via)
			fwdbody.Bound(pr.Out) // so a response already started cannot cut the forward
		},
		Transport:     httpidle.Transport{Base: hc.Transport, Idle: s.opt.SourceIdle},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				s.log.Warnf("forward %s %s: %v", r.Method, src.URL.Redacted(), err)
			}
			http.Error(w, "dfdaemon: source unreachable: "+err.Error(), http.StatusBadGateway)
		},
		ErrorLog: nil,
	}
	rp.ServeHTTP(w, r)
}

// client is the HTTP client for src's TLS settings, shared by every
// request with the same ones.
func (s *Swarm) client(src Source) (*http.Client, error) {
	key := fmt.Sprint(src.Insecure, src.CACerts)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[key]; c != nil {
		return c, nil
	}
	tlsCfg, err := tlsconf.Trust{CAFiles: src.CACerts, Insecure: src.Insecure}.Config()
	if err != nil {
		return nil, fmt.Errorf("source TLS: %w", err)
	}
	tr := &http.Transport{
		// Not the environment's proxy: dfdaemon's own HTTP_PROXY usually
		// points at dfdaemon, and a GET the proxy hands the swarm would
		// come back to it, without end.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		// Bytes go to the client as the source sent them.
		DisableCompression: true,
	}
	c := &http.Client{Transport: tr}
	s.clients[key] = c
	return c, nil
}

// hopHeaders are not the source's to see: hop-by-hop, the host, the
// encoding the client accepts (the swarm stores bytes as sent), and the
// conditionals and ranges the swarm does not honour.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Accept-Encoding", "Range", "If-Range",
	"If-Modified-Since", "If-None-Match", "Content-Length"}

// SourceHeaders are the request headers passed to the source: the
// client's (its Authorization among them) without hopHeaders.
func SourceHeaders(h http.Header) http.Header {
	out := h.Clone()
	for _, k := range hopHeaders {
		out.Del(k)
	}
	for _, v := range h.Values("Connection") {
		for _, k := range strings.Split(v, ",") {
			out.Del(strings.TrimSpace(k))
		}
	}
	return out
}

// ValidDigest reports whether d is "sha256:" and 64 lower-case hex
// digits, the only digest the swarm checks.
func ValidDigest(d string) bool {
	// Lower case only, as the OCI spec writes digests: the digest is the
	// task's identity, so one blob must have one spelling.
	p, err := digest.Parse(d)
	return err == nil && p.Algorithm() == digest.SHA256 && p.String() == d
}

// errNoBytes is a download that failed before its first byte.
var errNoBytes = errors.New("no byte delivered")
