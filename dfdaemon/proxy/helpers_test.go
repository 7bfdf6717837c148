package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	gomock "go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
)

// recorder is a generated Swarm mock that records the GETs handed to it
// and answers with a marker body.
type recorder struct {
	*MockSwarm
	mu    sync.Mutex
	calls []swarmCall
}

type swarmCall struct {
	target string
	url    string
	header http.Header
	trust  tlsconf.Trust
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{MockSwarm: NewMockSwarm(gomock.NewController(t))}
	r.EXPECT().ServeGET(gomock.Any(), gomock.Any(), gomock.Any(), gomock.Any()).AnyTimes().Do(
		func(w http.ResponseWriter, req *http.Request, target *url.URL, trust tlsconf.Trust) {
			r.mu.Lock()
			r.calls = append(r.calls, swarmCall{target: target.String(), url: req.URL.String(), header: req.Header.Clone(), trust: trust})
			r.mu.Unlock()
			fmt.Fprintf(w, "swarm:%s", target)
		})
	return r
}

func (r *recorder) got() []swarmCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]swarmCall(nil), r.calls...)
}

func mustRegexp(t *testing.T, expr string) *Regexp {
	t.Helper()
	re, err := NewRegexp(expr)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

func quietLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// startProxy serves a new Proxy on loopback; both close with the test.
func startProxy(t *testing.T, opts Options) (*Proxy, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		p.Close()
		srv.Close()
	})
	return p, srv
}

// proxyClient is an http.Client that uses the proxy for http and https.
func proxyClient(proxyURL string, tr *http.Transport) *http.Client {
	if tr == nil {
		tr = &http.Transport{}
	}
	u, _ := url.Parse(proxyURL)
	tr.Proxy = http.ProxyURL(u)
	tr.DisableCompression = true
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// waitGoroutines waits until the goroutine count is back to at most base,
// the check that every connection and copy loop of a test ended.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
