package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const connectOK = "HTTP/1.1 200 Connection Established\r\n\r\n"

// serveConnect opens a tunnel to the CONNECT authority, or intercepts it
// when hijack_https is set up and lists the authority.
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	if p.isClosed() {
		http.Error(w, "dfdaemon proxy: shutting down", http.StatusServiceUnavailable)
		return
	}
	authority := r.Host
	host, port, err := net.SplitHostPort(authority)
	if err != nil || host == "" || port == "" {
		http.Error(w, "dfdaemon proxy: CONNECT needs host:port, got "+authority, http.StatusBadRequest)
		return
	}
	if p.certs != nil && p.hostFor(authority) != nil {
		p.intercept(w, r, authority)
		return
	}
	p.tunnel(w, r, authority)
}

// tunnel dials first, so an unreachable host is a 502 the client can read,
// then splices the two connections until both sides are done or idle.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request, authority string) {
	ctx, cancel := context.WithTimeout(r.Context(), p.dialer.Timeout)
	upstream, err := p.dialer.DialContext(ctx, "tcp", authority)
	cancel()
	if err != nil {
		p.log.WithError(err).WithField("host", authority).Warn("proxy: CONNECT dial failed")
		http.Error(w, "dfdaemon proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	client, err := p.hijack(w)
	if err != nil {
		upstream.Close()
		p.log.WithError(err).Warn("proxy: CONNECT hijack failed")
		return
	}
	release, err := p.track(client, upstream)
	if err != nil {
		client.Close()
		upstream.Close()
		return
	}
	defer release()
	defer p.met.opened(routeTunnel)()
	p.log.WithField("host", authority).Debug("proxy: tunnel open")
	splice(client, upstream, p.idle)
}

// hijack takes the client connection over and acknowledges the CONNECT.
// Bytes the client sent early (a TLS hello right behind the CONNECT) are
// still in the server's buffer and are read first.
func (p *Proxy) hijack(w http.ResponseWriter) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "dfdaemon proxy: CONNECT is not supported on this connection", http.StatusInternalServerError)
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(p.hsTime))
	if _, err := io.WriteString(conn, connectOK); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	if brw.Reader.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: brw.Reader}, nil
	}
	return conn, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite half-closes the underlying connection.
func (c *bufferedConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// activity is the last time bytes moved either way through a tunnel: one
// direction may sit quiet for long (a client waiting on a large download)
// while the other is busy, and that is not idleness.
type activity struct {
	last atomic.Int64
	idle time.Duration
}

func (a *activity) touch() { a.last.Store(time.Now().UnixNano()) }

func (a *activity) expired() bool {
	return time.Since(time.Unix(0, a.last.Load())) >= a.idle
}

// splice copies both ways until both directions ended. A clean end in one
// direction is passed on as a half-close; an error or idleness ends both.
func splice(a, b net.Conn, idle time.Duration) {
	act := &activity{idle: idle}
	act.touch()
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		if err := copyIdle(dst, src, act); err != nil {
			// Unblock the other direction now rather than at its deadline.
			a.Close()
			b.Close()
			return
		}
		_ = closeWrite(dst)
	}
	wg.Add(2)
	go half(b, a)
	half(a, b)
	wg.Wait()
}

func copyIdle(dst, src net.Conn, act *activity) error {
	buf := make([]byte, 32<<10)
	for {
		_ = src.SetReadDeadline(time.Now().Add(act.idle))
		n, err := src.Read(buf)
		if n > 0 {
			act.touch()
			_ = dst.SetWriteDeadline(time.Now().Add(act.idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !act.expired() {
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
}

// intercept terminates the client's TLS with a certificate minted for the
// CONNECT host and serves the HTTP/1.1 requests inside through the rules,
// as https://authority URLs.
func (p *Proxy) intercept(w http.ResponseWriter, r *http.Request, authority string) {
	host, _, _ := net.SplitHostPort(authority)
	raw, err := p.hijack(w)
	if err != nil {
		p.log.WithError(err).Warn("proxy: CONNECT hijack failed")
		return
	}
	release, err := p.track(raw)
	if err != nil {
		raw.Close()
		return
	}
	defer release()
	defer p.met.opened(routeIntercept)()
	conn := tls.Server(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.certs(host)
		},
	})
	ctx, cancel := context.WithTimeout(p.ctx, p.hsTime)
	err = conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.log.WithError(err).WithField("host", authority).Warn("proxy: TLS handshake with the client failed (does it trust dfdaemon's CA?)")
		return
	}
	p.log.WithField("host", authority).Debug("proxy: intercepting")
	p.serveInner(conn, authority)
}

// serveInner runs an HTTP server on the one intercepted connection and
// returns when that connection is closed.
func (p *Proxy) serveInner(conn *tls.Conn, authority string) {
	innerHost := dropDefaultPort(authority, "443")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodConnect {
				http.Error(w, "dfdaemon proxy: CONNECT inside an intercepted connection", http.StatusMethodNotAllowed)
				return
			}
			r.URL.Scheme, r.URL.Host = "https", innerHost
			p.serveProxy(w, r)
		}),
		ReadHeaderTimeout: p.idle,
		IdleTimeout:       p.idle,
		BaseContext:       func(net.Listener) context.Context { return p.ctx },
		ErrorLog:          newStdLogger(p),
	}
	_ = srv.Serve(newOneConnListener(conn))
}

// oneConnListener hands out one connection, then blocks until that
// connection is closed, so http.Server.Serve returns only when the
// connection is done.
type oneConnListener struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
	next chan net.Conn
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{done: make(chan struct{}), next: make(chan net.Conn, 1)}
	l.conn = &notifyConn{Conn: c, closed: func() { l.once.Do(func() { close(l.done) }) }}
	l.next <- l.conn
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.next:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

type notifyConn struct {
	net.Conn
	closed func()
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.closed()
	return err
}
