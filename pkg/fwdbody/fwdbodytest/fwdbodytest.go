// Package fwdbodytest provides a transport that provokes the race
// pkg/fwdbody guards against, for the tests of every forwarder using it.
package fwdbodytest

import (
	"io"
	"net/http"
	"sync"
)

// LateBodyTransport makes each request body's reads past its declared
// length wait for Gate, and reports the first such read's error on Late:
// it holds Go's transport's extra read of a forwarded body until the test
// opens the gate, so that read comes after the server closed the body.
type LateBodyTransport struct {
	RT   *http.Transport
	Gate chan struct{}
	Late chan error
	open sync.Once
}

// Open opens Gate; a test may call it more than once (say, in its body
// and in a Cleanup that must not leave reads held).
func (l *LateBodyTransport) Open() { l.open.Do(func() { close(l.Gate) }) }

// New wraps rt.
func New(rt *http.Transport) *LateBodyTransport {
	return &LateBodyTransport{RT: rt, Gate: make(chan struct{}), Late: make(chan error, 1)}
}

// RoundTrip implements http.RoundTripper.
func (l *LateBodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &lateBody{ReadCloser: r.Body, left: r.ContentLength, l: l}
	}
	return l.RT.RoundTrip(r)
}

// CloseIdleConnections closes the wrapped transport's idle connections.
func (l *LateBodyTransport) CloseIdleConnections() { l.RT.CloseIdleConnections() }

type lateBody struct {
	io.ReadCloser
	left int64
	l    *LateBodyTransport
	once sync.Once
}

func (b *lateBody) Read(p []byte) (int, error) {
	if b.left > 0 {
		n, err := b.ReadCloser.Read(p)
		b.left -= int64(n)
		return n, err
	}
	<-b.l.Gate
	n, err := b.ReadCloser.Read(p)
	b.once.Do(func() { b.l.Late <- err })
	return n, err
}
