package swarm_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/dfdaemon/mirror"
	"github.com/damselfly-p2p/damselfly/dfdaemon/proxy"
	"github.com/damselfly-p2p/damselfly/dfdaemon/swarm"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// originListener listens where http.ProxyFromEnvironment does not skip
// the proxy: not a loopback literal, not "localhost". It returns the
// listener and the host to put in URLs.
func originListener(t *testing.T) (net.Listener, string) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			if l, err := net.Listen("tcp4", n.IP.String()+":0"); err == nil {
				return l, l.Addr().String()
			}
		}
	}
	if h, err := os.Hostname(); err == nil && h != "localhost" {
		if l, err := net.Listen("tcp4", net.JoinHostPort(h, "0")); err == nil {
			_, port, _ := net.SplitHostPort(l.Addr().String())
			return l, net.JoinHostPort(h, port)
		}
	}
	imagetest.Unavailable(t, "no address the environment proxy would be used for")
	return nil, ""
}

// closedNodes is a supernode nobody listens on: the swarm falls back to
// the source at once.
func closedNodes(t *testing.T) nodes.List {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var ns nodes.List
	if err := ns.Set(addr); err != nil {
		t.Fatal(err)
	}
	return ns
}

// With dfdaemon's own HTTP_PROXY pointing at itself (as
// docs/dfdaemon-proxy.md says it usually does), a blob GET the proxy
// hands the swarm must reach the origin directly: not its HEAD, not the
// stream's source fetch, not a forwarded Range GET may come back through
// the proxy.
func TestSwarmIgnoresOwnEnvironmentProxy(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1<<16)
	s256 := sha256.Sum256(body)
	d := "sha256:" + hex.EncodeToString(s256[:])
	l, host := originListener(t)
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "b", time.Time{}, bytes.NewReader(body))
	}))
	origin.Listener = l
	origin.Start()
	defer origin.Close()

	log := logrus.New()
	log.SetOutput(io.Discard)
	sw := swarm.New(swarm.Options{Nodes: closedNodes(t), Home: t.TempDir(), IP: "127.0.0.1",
		ServerExecutable: "/bin/false", Log: log})
	re, err := proxy.NewRegexp("blobs/sha256")
	if err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New(proxy.Options{Rules: []proxy.Rule{{Regx: re}}, Swarm: swarm.URLSwarm{S: sw}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	front, hops := loopFront(t, px)
	t.Setenv("HTTP_PROXY", front.URL)
	t.Setenv("http_proxy", front.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	pu, _ := url.Parse(front.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 30 * time.Second}
	for _, rg := range []string{"", "bytes=0-9"} {
		hops.Store(0)
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/x/blobs/"+d, nil)
		want := body
		if rg != "" {
			req.Header.Set("Range", rg)
			want = body[:10]
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("Range %q: %v", rg, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := hops.Load(); n != 1 {
			t.Fatalf("Range %q: the request passed the proxy %d times, want once (status %d)", rg, n, resp.StatusCode)
		}
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("Range %q: status %d, %d bytes, %v; want the %d bytes asked for", rg, resp.StatusCode, len(b), err, len(want))
		}
	}
}

// An origin that leads back to dfdaemon (here: one that relays every
// request through dfdaemon's proxy to itself) must not make an endless
// loop: the swarm's HEAD, its forwards and its stream's source fetches
// carry the Via the proxy refuses.
func TestSwarmRequestsThatComeBackAreRefused(t *testing.T) {
	body := bytes.Repeat([]byte("y"), 1<<16)
	s256 := sha256.Sum256(body)
	d := "sha256:" + hex.EncodeToString(s256[:])
	log := logrus.New()
	log.SetOutput(io.Discard)
	sw := swarm.New(swarm.Options{Nodes: closedNodes(t), Home: t.TempDir(), IP: "127.0.0.1",
		ServerExecutable: "/bin/false", Log: log})
	re, err := proxy.NewRegexp("blobs/sha256")
	if err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New(proxy.Options{Rules: []proxy.Rule{{Regx: re}}, Swarm: swarm.URLSwarm{S: sw}, Logger: log,
		Via: sw.Via()})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	front, hops := loopFront(t, px)
	pu, _ := url.Parse(front.URL)
	relay := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 30 * time.Second}
	var answerHEAD atomic.Bool
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && answerHEAD.Load() {
			http.ServeContent(w, r, "b", time.Time{}, bytes.NewReader(body))
			return
		}
		out, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
		out.Header = r.Header.Clone()
		resp, err := relay.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer origin.Close()

	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 30 * time.Second}
	for _, tc := range []struct {
		name      string
		rg        string
		head      bool
		wantHops  int64
		wantRelay string
	}{
		{"HEAD and forwarded GET", "", false, 3, "HEAD, then the forward"},
		{"forwarded Range GET", "bytes=0-9", false, 2, "the forward"},
		{"stream's source fetch", "", true, 2, "the source fetch"},
	} {
		hops.Store(0)
		answerHEAD.Store(tc.head)
		req, _ := http.NewRequest(http.MethodGet, origin.URL+"/v2/x/blobs/"+d, nil)
		if tc.rg != "" {
			req.Header.Set("Range", tc.rg)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n := hops.Load(); n != tc.wantHops {
			t.Errorf("%s: %d requests reached the proxy, want %d (the client's, and %s refused as a loop)",
				tc.name, n, tc.wantHops, tc.wantRelay)
		}
	}
}

// loopFront serves px, answering 508 past 20 requests so that a loop
// through it ends; hops counts the requests it saw.
func loopFront(t *testing.T, px http.Handler) (*httptest.Server, *atomic.Int64) {
	hops := new(atomic.Int64)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hops.Add(1) > 20 {
			http.Error(w, "test stops the loop", http.StatusLoopDetected)
			return
		}
		px.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front, hops
}

// A mirror whose registry leads back to itself (registry_mirror.remote
// naming dfdaemon's own port, or a registry name resolved to its host)
// must not forward each request to itself without end, a connection and
// a goroutine per hop: the swarm's HEAD and forwards carry its Via, and a
// request that comes back with it is refused as a loop.
func TestMirrorThatLeadsToItselfRefusesTheLoop(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	sw := swarm.New(swarm.Options{Nodes: closedNodes(t), Home: t.TempDir(), IP: "127.0.0.1",
		ServerExecutable: "/bin/false", Log: log})
	m := &mirror.Mirror{Swarm: sw}
	front, hops := loopFront(t, m)
	m.Remote, _ = url.Parse(front.URL)
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		method, path string
		wantHops     int64
		wantRelay    string
	}{
		{http.MethodGet, "/v2/x/manifests/latest", 2, "the forward"},
		{http.MethodHead, "/v2/x/blobs/" + d, 2, "the forward"},
		{http.MethodGet, "/v2/x/blobs/" + d, 3, "the HEAD, then the forward"},
	} {
		hops.Store(0)
		req, _ := http.NewRequest(tc.method, front.URL+tc.path, nil)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusLoopDetected {
			t.Errorf("%s %s: %s, want 508", tc.method, tc.path, resp.Status)
		}
		if n := hops.Load(); n != tc.wantHops {
			t.Errorf("%s %s: %d requests reached the mirror, want %d (the client's, and %s refused as a loop)",
				tc.method, tc.path, n, tc.wantHops, tc.wantRelay)
		}
	}
}
