package swarm

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// A forwarded request (a registry push through the mirror, say) whose
// source answers as soon as it has the body: the transport's read past
// the body's length comes after the response started, when net/http has
// closed the client's body. That read must not fail, or the transport
// drops the source connection and the client gets a cut response.
// lateBodyTransport holds that read until the client has the response
// headers, which makes the race certain.
func TestForwardBodyOutlivesResponseStart(t *testing.T) {
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Write(payload)
	}))
	defer origin.Close()
	s := newTestSwarm(t)
	tr := &lateBodyTransport{rt: &http.Transport{}, gate: make(chan struct{}), late: make(chan error, 1)}
	defer tr.rt.CloseIdleConnections()
	var release sync.Once
	open := func() { release.Do(func() { close(tr.gate) }) }
	t.Cleanup(open)
	src := Source{URL: mustURL(t, origin.URL+"/v2/x/blobs/uploads/1")}
	s.clients[fmt.Sprint(src.Insecure, src.CACerts)] = &http.Client{Transport: tr} // the client Forward uses
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.Forward(w, r, src) }))
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/octet-stream", strings.NewReader("up"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	open()
	if err := <-tr.late; err != io.EOF {
		t.Errorf("the transport's read of the request body after the response started: %v, want EOF", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("response through Forward: %d of %d bytes, %v", len(got), len(payload), err)
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// lateBodyTransport makes each request body's reads past its declared
// length wait for gate, and reports the first such read's error on late.
type lateBodyTransport struct {
	rt   *http.Transport
	gate chan struct{}
	late chan error
}

func (l *lateBodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &lateBody{ReadCloser: r.Body, left: r.ContentLength, l: l}
	}
	return l.rt.RoundTrip(r)
}

type lateBody struct {
	io.ReadCloser
	left int64
	l    *lateBodyTransport
	once sync.Once
}

func (b *lateBody) Read(p []byte) (int, error) {
	if b.left > 0 {
		n, err := b.ReadCloser.Read(p)
		b.left -= int64(n)
		return n, err
	}
	<-b.l.gate
	n, err := b.ReadCloser.Read(p)
	b.once.Do(func() { b.l.late <- err })
	return n, err
}
