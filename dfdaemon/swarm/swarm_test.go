package swarm

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
)

// closedNode is a supernode address nobody listens on: every download
// falls back to the source, which is what these tests exercise (the
// swarm itself is covered by the e2e tests).
func closedNode(t *testing.T) nodes.List {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var n nodes.List
	if err := n.Set(addr); err != nil {
		t.Fatal(err)
	}
	return n
}

func newTestSwarm(t *testing.T) *Swarm { return newTestSwarmWith(t, nil) }

// newTestSwarmWith is newTestSwarm with the options edit makes (nil:
// none).
func newTestSwarmWith(t *testing.T, edit func(*Options)) *Swarm {
	log := logrus.New()
	log.SetOutput(io.Discard)
	// No peer server runs, and none may be spawned: the default, this
	// executable, is the test binary.
	opt := Options{Nodes: closedNode(t), Home: t.TempDir(), IP: "127.0.0.1", ServerExecutable: "/bin/false", Log: log}
	if edit != nil {
		edit(&opt)
	}
	return New(opt)
}

// serve runs ServeGET for every request to a test server, with the
// source at src and identity id.
func serve(t *testing.T, s *Swarm, src string, id Identity) *httptest.Server {
	u, _ := url.Parse(src)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeGET(w, r, Source{URL: u}, id)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestServeGETForwardsWhatTheSourceRefuses(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://auth/token"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	}))
	defer origin.Close()
	s := newTestSwarm(t)
	srv := serve(t, s, origin.URL+"/v2/x/blobs/"+sum([]byte("x")), Identity{Digest: sum([]byte("x"))})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("got %d %v, want the source's 401 challenge", resp.StatusCode, resp.Header)
	}
	if n := value(s.m.Forwarded); n != 1 {
		t.Fatalf("%v forwarded, want 1", n)
	}
}

// blobOrigin serves body for HEAD and GET, and records the Authorization
// of the last GET.
func blobOrigin(t *testing.T, body []byte, auth *atomic.Value) *httptest.Server {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			auth.Store(r.Header.Get("Authorization"))
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(o.Close)
	return o
}

func TestServeGETStreamsFromSourceWithoutSupernode(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	var auth atomic.Value
	origin := blobOrigin(t, body, &auth)
	s := newTestSwarm(t)
	srv := serve(t, s, origin.URL+"/v2/x/blobs/"+sum(body), Identity{Digest: sum(body)})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) || resp.ContentLength != int64(len(body)) {
		t.Fatalf("body %d bytes (length %d), %v; want the %d-byte blob", len(got), resp.ContentLength, err, len(body))
	}
	if a, _ := auth.Load().(string); a != "Bearer tok" {
		t.Fatalf("source saw Authorization %q, want the client's", a)
	}
	// The handler counts the stream after its last byte has left, so the
	// client can read the whole body first; Close waits for the handler.
	srv.Close()
	if n := value(s.m.Streams.WithLabelValues("source")); n != 1 {
		t.Fatalf("%v streams from the source, want 1", n)
	}
}

func TestServeGETAbortsWrongBytes(t *testing.T) {
	body := bytes.Repeat([]byte{1, 2, 3}, 100000)
	var auth atomic.Value
	origin := blobOrigin(t, body, &auth)
	want := sum(append(bytes.Clone(body[:len(body)-1]), 9))
	s := newTestSwarm(t)
	srv := serve(t, s, origin.URL+"/v2/x/blobs/"+want, Identity{Digest: want})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(got) >= len(body) {
		t.Fatalf("client read %d of %d bytes with error %v: want the connection cut before the end", len(got), len(body), err)
	}
	if n := value(s.m.Streams.WithLabelValues("digest_mismatch")); n != 1 {
		t.Fatalf("%v digest mismatches counted, want 1", n)
	}
}

func TestServeGETClientGoneStopsDownload(t *testing.T) {
	const size = 64 << 20
	canceled := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		if r.Method == http.MethodHead {
			return
		}
		// 1 MiB, then nothing until the request is canceled.
		_, _ = w.Write(make([]byte, 1<<20))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(canceled)
	}))
	defer origin.Close()
	s := newTestSwarm(t)
	srv := serve(t, s, origin.URL+"/blob", Identity{})
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 512<<10); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the source download went on after the client left")
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(s.m.InFlight) != 0 || runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("after the client left: %v streams in flight, %d goroutines (%d before)",
				value(s.m.InFlight), runtime.NumGoroutine(), base)
		}
		http.DefaultClient.CloseIdleConnections()
		s.mu.Lock()
		for _, c := range s.clients {
			c.CloseIdleConnections()
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	if n := value(s.m.Streams.WithLabelValues("client_gone")); n != 1 {
		t.Fatalf("%v streams ended by the client leaving, want 1", n)
	}
}

// value is the current value of a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// A proxy's GET of a hijacked HTTPS host reaches it with the trust the
// proxy gives (the host's certs, or insecure); with none, the host's
// self-signed certificate is refused.
func TestURLSwarmUsesTheProxysTrust(t *testing.T) {
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	}))
	origin.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	origin.StartTLS()
	defer origin.Close()
	caFile := filepath.Join(t.TempDir(), "origin.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: origin.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(origin.URL + "/v2/x/blobs/" + sum([]byte("x")))
	u := URLSwarm{S: newTestSwarm(t)}
	for _, tc := range []struct {
		name  string
		trust tlsconf.Trust
		want  int
	}{
		{"certs", tlsconf.Trust{CAFiles: []string{caFile}}, http.StatusUnauthorized},
		{"insecure", tlsconf.Trust{Insecure: true}, http.StatusUnauthorized},
		{"system roots", tlsconf.Trust{}, http.StatusBadGateway},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, target.String(), nil)
		u.ServeGET(rec, req, target, tc.trust)
		if rec.Code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, rec.Code, rec.Body.String(), tc.want)
		}
	}
}

// TestValidDigest: a blob's identity has one spelling, lower-case sha256.
func TestValidDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	if !ValidDigest(good) {
		t.Fatalf("%s refused", good)
	}
	for _, bad := range []string{"", "sha256:", strings.ToUpper(good), "sha256:" + strings.Repeat("AB", 32),
		"md5:" + strings.Repeat("ab", 16), "blake3:" + strings.Repeat("ab", 32), good + "00", "sha256:" + strings.Repeat("zz", 32)} {
		if ValidDigest(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A proxy's GET of a registry blob by a digest the swarm does not check
// (sha512, sha256 in upper case) is forwarded to the source, never served
// by the swarm as an unchecked URL task.
func TestURLSwarmForwardsBlobsItCannotVerify(t *testing.T) {
	body := bytes.Repeat([]byte("not-the-blob"), 10000)
	var auth atomic.Value
	origin := blobOrigin(t, body, &auth)
	for _, d := range []string{"sha512:" + strings.Repeat("ab", 64), "sha256:" + strings.Repeat("AB", 32),
		"blake3:" + strings.Repeat("ab", 32)} {
		target, _ := url.Parse(origin.URL + "/v2/x/blobs/" + d)
		s := newTestSwarm(t)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			URLSwarm{S: s}.ServeGET(w, r, target, tlsconf.Trust{})
		}))
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		srv.Close()
		streams := value(s.m.Streams.WithLabelValues("source")) + value(s.m.Streams.WithLabelValues("p2p"))
		if streams != 0 || value(s.m.Forwarded) != 1 {
			t.Errorf("%s: %v swarm streams, %v forwarded; want the GET forwarded, not served as an unchecked task",
				d[:10], streams, value(s.m.Forwarded))
		}
	}
}
