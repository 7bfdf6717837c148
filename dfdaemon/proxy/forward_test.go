package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/fwdbody/fwdbodytest"
)

// echoOrigin answers with what it received: method, body digest, some
// request headers as response headers.
func echoOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("origin read: %v", err)
		}
		h := w.Header()
		h.Set("X-Method", r.Method)
		h.Set("X-Path", r.URL.RequestURI())
		h.Set("X-Host", r.Host)
		h.Set("X-Body-Sha", fmt.Sprintf("%x", sha256.Sum256(body)))
		h.Set("X-Got-Via", r.Header.Get("Via"))
		h.Set("X-Got-XFF", r.Header.Get("X-Forwarded-For"))
		h.Set("X-Got-Secret", r.Header.Get("X-Secret"))
		h.Set("X-Got-Proxy-Auth", r.Header.Get("Proxy-Authorization"))
		h.Set("X-Got-Auth", r.Header.Get("Authorization"))
		h.Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestForwardMethods(t *testing.T) {
	origin := echoOrigin(t)
	swarm := newRecorder(t)
	_, px := startProxy(t, Options{Swarm: swarm, Rules: []Rule{{Regx: mustRegexp(t, `blobs/sha256:`)}}})
	c := proxyClient(px.URL, nil)
	defer c.CloseIdleConnections()

	payload := make([]byte, 3<<20)
	rand.Read(payload)
	for _, method := range []string{"GET", "POST", "HEAD", "PUT"} {
		var body io.Reader
		if method == "POST" || method == "PUT" {
			body = bytes.NewReader(payload)
		}
		req, _ := http.NewRequest(method, origin.URL+"/v2/a/blobs/sha256:1?x=y", body)
		req.Header.Set("Connection", "X-Secret")
		req.Header.Set("X-Secret", "per-hop")
		req.Header.Set("Authorization", "Bearer t")
		req.Header.Set("X-Forwarded-For", "10.9.9.9")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if method == "GET" {
			// A blob GET matches the rule and goes to the swarm.
			if want := "swarm:" + origin.URL + "/v2/a/blobs/sha256:1?x=y"; string(got) != want {
				t.Errorf("GET body %q, want %q", got, want)
			}
			continue
		}
		h := resp.Header
		if h.Get("X-Method") != method || h.Get("X-Path") != "/v2/a/blobs/sha256:1?x=y" {
			t.Errorf("%s: origin saw %s %s", method, h.Get("X-Method"), h.Get("X-Path"))
		}
		if body != nil {
			if want := fmt.Sprintf("%x", sha256.Sum256(payload)); h.Get("X-Body-Sha") != want || !bytes.Equal(got, payload) {
				t.Errorf("%s: body changed on the way (%d bytes back)", method, len(got))
			}
		}
		if !strings.HasPrefix(h.Get("X-Got-Via"), "1.1 dfdaemon-") || !strings.HasPrefix(h.Get("Via"), "1.1 dfdaemon-") {
			t.Errorf("%s: Via request %q response %q", method, h.Get("X-Got-Via"), h.Get("Via"))
		}
		if h.Get("X-Got-XFF") != "10.9.9.9, 127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For %q", method, h.Get("X-Got-XFF"))
		}
		if h.Get("X-Got-Secret") != "" || h.Get("X-Got-Auth") != "Bearer t" {
			t.Errorf("%s: hop-by-hop X-Secret %q, Authorization %q", method, h.Get("X-Got-Secret"), h.Get("X-Got-Auth"))
		}
	}
	if n := len(swarm.got()); n != 1 {
		t.Errorf("swarm got %d requests, want 1 (the GET)", n)
	}
}

func TestSwarmGetsEndToEndHeaders(t *testing.T) {
	swarm := newRecorder(t)
	_, px := startProxy(t, Options{Swarm: swarm, Rules: []Rule{
		{Regx: mustRegexp(t, `direct-host`), Direct: true},
		{Regx: mustRegexp(t, `^http://reg.example/`), UseHTTPS: true, Redirect: "mirror.example:5000"},
	}})
	c := proxyClient(px.URL, nil)
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://reg.example/v2/a/blobs/sha256:9", nil)
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set("Proxy-Authorization", "Basic cHJveHk=")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	calls := swarm.got()
	if len(calls) != 1 {
		t.Fatalf("swarm calls %d", len(calls))
	}
	call := calls[0]
	if want := "https://mirror.example:5000/v2/a/blobs/sha256:9"; call.target != want || call.url != want {
		t.Errorf("swarm target %s url %s, want %s", call.target, call.url, want)
	}
	if call.header.Get("Authorization") != "Bearer secret" {
		t.Error("Authorization did not reach the swarm")
	}
	for _, k := range []string{"Proxy-Authorization", "X-Hop", "Connection"} {
		if call.header.Get(k) != "" {
			t.Errorf("hop-by-hop %s reached the swarm", k)
		}
	}
}

// TestForwardStreams checks that neither body is buffered whole: the
// origin sees the first bytes of an upload before the client sent the
// rest, and the client reads the first bytes of a download before the
// origin wrote the rest.
func TestForwardStreams(t *testing.T) {
	gotFirst := make(chan struct{})
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			buf := make([]byte, 5)
			if _, err := io.ReadFull(r.Body, buf); err != nil || string(buf) != "first" {
				t.Errorf("origin first read %q %v", buf, err)
			}
			close(gotFirst)
			rest, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s%s", buf, rest)
			return
		}
		w.Write([]byte("head;"))
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte("tail"))
	}))
	defer origin.Close()
	_, px := startProxy(t, Options{})
	c := proxyClient(px.URL, nil)
	defer c.CloseIdleConnections()

	pr, pw := io.Pipe()
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("PUT", origin.URL+"/up", pr)
		resp, err := c.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	pw.Write([]byte("first"))
	select {
	case <-gotFirst:
	case <-time.After(5 * time.Second):
		t.Fatal("origin did not see the first upload bytes while the upload was open")
	}
	pw.Write([]byte("-second"))
	pw.Close()
	if got := <-done; got != "first-second" {
		t.Fatalf("upload echo %q", got)
	}

	resp, err := c.Get(origin.URL + "/down")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "head;" {
		t.Fatalf("first download bytes %q %v", buf, err)
	}
	close(release)
	if rest, _ := io.ReadAll(resp.Body); string(rest) != "tail" {
		t.Fatalf("rest %q", rest)
	}
}

// TestClientCloseMidStream: a client that hangs up mid-download ends the
// origin request too, and nothing stays behind.
func TestClientCloseMidStream(t *testing.T) {
	originDone := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(originDone)
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		w.Header().Set("Content-Length", fmt.Sprint(1<<40))
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			default:
			}
		}
	}))
	defer origin.Close()
	_, px := startProxy(t, Options{})
	base := runtime.NumGoroutine()
	c := proxyClient(px.URL, nil)
	resp, err := c.Get(origin.URL + "/huge")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	select {
	case <-originDone:
	case <-time.After(5 * time.Second):
		t.Fatal("origin kept streaming after the client left")
	}
	waitGoroutines(t, base)
}

func TestForwardErrors(t *testing.T) {
	p, px := startProxy(t, Options{DialTimeout: time.Second})
	c := proxyClient(px.URL, nil)
	defer c.CloseIdleConnections()

	// A closed port: nothing listens there once the server is closed.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	resp, err := c.Get(deadURL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("unreachable origin: %d, want 502", resp.StatusCode)
	}

	// A request that already passed through this proxy (its own Via).
	req, _ := http.NewRequest("GET", deadURL+"/loop", nil)
	req.Header.Set("Via", "1.1 other, 1.1 "+p.via)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusLoopDetected {
		t.Errorf("loop: %d, want 508", resp.StatusCode)
	}

	// Not a proxy request at all.
	resp, err = http.Get(px.URL + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("origin-form request: %d, want 400", resp.StatusCode)
	}
	r := httptest.NewRequest("GET", "ftp://host/x", nil)
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("ftp scheme: %d, want 400", w.Code)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	for name, opts := range map[string]Options{
		"swarm rule without swarm": {Rules: []Rule{{Regx: mustRegexp(t, "x")}}},
		"rule without regx":        {Rules: []Rule{{Direct: true}}, Swarm: newRecorder(t)},
		"missing cert files": {Hijack: &HijackConfig{Cert: dir + "/none.crt", Key: dir + "/none.key",
			Hosts: []HijackHost{{Regx: mustRegexp(t, "x")}}}},
		"missing host certs": {Hijack: &HijackConfig{Hosts: []HijackHost{{Regx: mustRegexp(t, "x"), Certs: []string{dir + "/ca.pem"}}}}},
	} {
		if _, err := New(Options{Rules: opts.Rules, Swarm: opts.Swarm, Hijack: opts.Hijack, Logger: quietLogger()}); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := New(Options{Rules: []Rule{{Regx: mustRegexp(t, "x"), Direct: true}}, Logger: quietLogger()}); err != nil {
		t.Errorf("direct rules need no swarm: %v", err)
	}
}

func TestIsProxyRequest(t *testing.T) {
	for target, want := range map[string]bool{"http://a/b": true, "https://a/b": true, "/v2/": false} {
		if got := IsProxyRequest(httptest.NewRequest("GET", target, nil)); got != want {
			t.Errorf("%s: %v", target, got)
		}
	}
	r := httptest.NewRequest("CONNECT", "a:443", nil)
	if !IsProxyRequest(r) {
		t.Error("CONNECT is a proxy request")
	}
}

func TestForwardSlowOrigin(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer origin.Close()
	_, px := startProxy(t, Options{IdleTimeout: 300 * time.Millisecond})
	c := proxyClient(px.URL, nil)
	defer c.CloseIdleConnections()
	start := time.Now()
	resp, err := c.Get(origin.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("origin silent past the timeout: %s, want 504", resp.Status)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %v, timeout 300ms", d)
	}
}

// An origin that answers as soon as it has the request body starts the
// response while the transport still holds that body: after the declared
// length it reads it once more, to check for excess. That read must not
// find the body closed under it, or the transport drops the origin
// connection and the client gets a cut response (TestHijack's flake
// under load). fwdbodytest.LateBodyTransport holds the transport's late read until
// the client has the response headers, which makes the race certain.
func TestForwardBodyOutlivesResponseStart(t *testing.T) {
	payload := randomBytes(1 << 20)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Write(payload)
	}))
	defer origin.Close()
	tr := fwdbodytest.New(newTransport(DefaultDialTimeout, DefaultHandshakeTimeout, DefaultIdleTimeout))
	t.Cleanup(tr.Open)
	_, px := startProxy(t, Options{Transport: tr})
	c := proxyClient(px.URL, nil)
	defer c.CloseIdleConnections()

	req, _ := http.NewRequest("PUT", origin.URL+"/up", strings.NewReader("up"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tr.Open()
	if err := <-tr.Late; err != io.EOF {
		t.Errorf("the transport's read of the request body after the response started: %v, want EOF", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("response through the proxy: %d of %d bytes, %v", len(got), len(payload), err)
	}
}
