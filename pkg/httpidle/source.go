package httpidle

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Transport bounds how long a read of a response body may wait for the
// source: a Read that has not returned within Idle cancels the request, so
// it fails instead of blocking. A forwarding handler then aborts its own
// answer (the client sees it cut) and frees the source connection, where
// a source that stopped sending mid-body would otherwise hold both for as
// long as the client waits. The time between Reads, while the caller
// writes what it read to a slow client, is not counted: writes have their
// own bound (Writer). Idle <= 0 leaves reads unbounded.
type Transport struct {
	Base http.RoundTripper
	Idle time.Duration
}

// RoundTrip implements http.RoundTripper.
func (t Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.Idle <= 0 || r.Header.Get("Upgrade") != "" {
		// An upgrade's answer body is the upgraded connection, which a
		// reverse proxy needs writable: it is left as it is.
		return t.Base.RoundTrip(r)
	}
	ctx, cancel := context.WithCancel(r.Context())
	resp, err := t.Base.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	b := &idleBody{ReadCloser: resp.Body, idle: t.Idle, cancel: cancel}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.fired.Store(true)
		cancel()
	})
	b.timer.Stop()
	resp.Body = b
	return resp, nil
}

// CloseIdleConnections closes Base's idle connections, as
// http.Client.CloseIdleConnections does for a Transport it knows.
func (t Transport) CloseIdleConnections() {
	if c, ok := t.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// idleBody is a response body whose every Read is bounded by idle.
type idleBody struct {
	io.ReadCloser
	timer  *time.Timer
	idle   time.Duration
	cancel context.CancelFunc
	fired  atomic.Bool // the bound cancelled the request
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF && b.fired.Load() {
		// Said plainly: the cancellation alone reads "context canceled".
		err = fmt.Errorf("the source sent nothing for %s: %w", b.idle, err)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
