package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/netfake"
)

// tlsOrigin serves /data (a fixed random payload) and echoes the sha256
// of any request body, over TLS with httptest's own certificate.
func tlsOrigin(t *testing.T, name string, payload []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Origin", name)
		w.Header().Set("X-Body-Sha", fmt.Sprintf("%x", sha256.Sum256(body)))
		w.Header().Set("X-Path", r.URL.RequestURI())
		if r.URL.Path == "/data" {
			w.Write(payload)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestConnectTunnel(t *testing.T) {
	payload := randomBytes(1 << 20)
	origin := tlsOrigin(t, "o", payload)
	_, px := startProxy(t, Options{})
	base := runtime.NumGoroutine()

	c := proxyClient(px.URL, origin.Client().Transport.(*http.Transport).Clone())
	for i := 0; i < 3; i++ {
		upload := randomBytes(512 << 10)
		resp, err := c.Post(origin.URL+"/data", "application/octet-stream", bytes.NewReader(upload))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("download through the tunnel: %d bytes, %v", len(got), err)
		}
		if want := fmt.Sprintf("%x", sha256.Sum256(upload)); resp.Header.Get("X-Body-Sha") != want {
			t.Fatal("upload changed in the tunnel")
		}
		// A tunnel: the client sees the origin's own certificate.
		if !resp.TLS.PeerCertificates[0].Equal(origin.Certificate()) {
			t.Fatal("the client did not talk TLS with the origin itself")
		}
	}
	c.CloseIdleConnections()
	waitGoroutines(t, base)
}

// tcpServer runs handle on every connection to a loopback listener and
// returns the listener's address.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoServer copies back what it reads, then half-closes.
func echoServer(t *testing.T) string {
	return tcpServer(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// connect opens a raw CONNECT to target through the proxy and returns the
// connection and the proxy's answer.
func connect(t *testing.T, proxyURL, target string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Time{})
	return c, br, resp
}

func TestTunnelBytesAndHalfClose(t *testing.T) {
	echo := echoServer(t)
	_, px := startProxy(t, Options{})
	base := runtime.NumGoroutine()
	c, br, resp := connect(t, px.URL, echo)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	data := randomBytes(4 << 20)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite() // the echo server sees EOF through the tunnel
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(br) // ends when the echo's half-close comes back
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo through the tunnel: %d of %d bytes, %v", len(got), len(data), err)
	}
	c.Close()
	waitGoroutines(t, base)
}

func TestConnectUnreachable(t *testing.T) {
	_, px := startProxy(t, Options{DialTimeout: 300 * time.Millisecond})
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := closed.Addr().String()
	closed.Close()
	silent := netfake.Silent(t)
	for _, target := range []string{refused, silent} {
		start := time.Now()
		_, _, resp := connect(t, px.URL, target)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %s, want 502", target, resp.Status)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: answered after %v, dial timeout 300ms", target, d)
		} else if target == silent && d < 250*time.Millisecond {
			t.Errorf("silent host answered after %v: the dial timeout was not what ended it", d)
		}
	}
	_, _, resp := connect(t, px.URL, "no-port")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("CONNECT without port: %s, want 400", resp.Status)
	}
}

func TestTunnelIdle(t *testing.T) {
	echo := echoServer(t)
	ticker := tcpServer(t, func(c net.Conn) {
		for i := 0; i < 10; i++ {
			time.Sleep(100 * time.Millisecond)
			c.Write([]byte{byte('0' + i)})
		}
	})
	_, px := startProxy(t, Options{IdleTimeout: 300 * time.Millisecond})

	// Quiet both ways: the tunnel ends after the idle timeout.
	c, br, _ := connect(t, px.URL, echo)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle tunnel: read %v, want EOF", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("idle tunnel closed after %v, idle timeout 300ms", d)
	}

	// Busy one way for longer than the timeout: the tunnel stays.
	c2, br2, _ := connect(t, px.URL, ticker)
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(br2)
	if string(got) != "0123456789" {
		t.Fatalf("one-way traffic for 1s through an idle-300ms tunnel: %q, %v", got, err)
	}
}

func TestTunnelClientCloseMidStream(t *testing.T) {
	writerDone := make(chan error, 1)
	endless := tcpServer(t, func(c net.Conn) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				writerDone <- err
				return
			}
		}
	})
	_, px := startProxy(t, Options{})
	base := runtime.NumGoroutine()
	c, br, _ := connect(t, px.URL, endless)
	if _, err := io.CopyN(io.Discard, br, 2<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-writerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the origin kept writing into a tunnel whose client left")
	}
	waitGoroutines(t, base)
}

func TestCloseEndsTunnels(t *testing.T) {
	echo := echoServer(t)
	p, px := startProxy(t, Options{})
	c, br, _ := connect(t, px.URL, echo)
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	p.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after Close: %v, want EOF", err)
	}
	_, _, resp := connect(t, px.URL, echo)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("CONNECT after Close: %s, want 503", resp.Status)
	}
}
