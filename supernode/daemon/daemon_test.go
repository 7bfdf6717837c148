package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/config"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testConfig(t *testing.T) config.Config {
	c := config.Default()
	c.Base.HomeDir = t.TempDir()
	c.Base.AdvertiseIP = "127.0.0.1"
	c.Base.ListenPort, c.Base.DownloadPort = freePort(t), freePort(t)
	for c.Base.DownloadPort == c.Base.ListenPort {
		c.Base.DownloadPort = freePort(t)
	}
	return c
}

func TestRunAndShutdown(t *testing.T) {
	c := testConfig(t)
	d, err := New(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(c.Base.ListenPort) + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "OK" {
		t.Fatalf("ping: %q", b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no shutdown")
	}
}

func TestNewFailsClearly(t *testing.T) {
	c := testConfig(t)
	l, err := net.Listen("tcp", ":"+strconv.Itoa(c.Base.ListenPort))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := New(c, io.Discard); err == nil {
		t.Fatal("port in use accepted")
	}
	c = testConfig(t)
	c.Base.PeerUpLimit = 0
	if _, err := New(c, io.Discard); err == nil {
		t.Fatal("invalid config accepted")
	}
}

// Members are reached over plain HTTP unless this supernode's API serves
// TLS; a cluster CA file that is missing or holds no certificate fails the
// start instead of leaving the members untrusted.
func TestMemberTLS(t *testing.T) {
	b := testConfig(t).Base
	if c, err := memberTLS(b); c != nil || err != nil {
		t.Fatalf("no tlsCert: %v %v, want plain HTTP", c, err)
	}
	if err := b.Cluster.Set("127.0.0.1:1,127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("no PEM here"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.TLSCert = empty
	if _, err := memberTLS(b); err == nil || !strings.Contains(err.Error(), "cluster TLS") {
		t.Fatalf("tlsCert without a certificate: %v", err)
	}
	b.TLSCert, b.ClusterCACerts = "", config.FileList{empty}
	if c, err := memberTLS(b); c != nil || err != nil {
		t.Fatalf("cluster CAs without tlsCert: %v %v, want plain HTTP", c, err)
	}
}

// A slow API request does not hold the piece server's shutdown: both stop
// taking connections at once, each with its own wait for in-flight
// requests. One after the other, the piece port took transfers for the
// API's whole wait and then gave them no time at all.
func TestShutdownStopsServersTogether(t *testing.T) {
	c := testConfig(t)
	d, err := New(c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d.shutdownWait = 3 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	api := "127.0.0.1:" + strconv.Itoa(c.Base.ListenPort)
	if resp, err := http.Get("http://" + api + "/_ping"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	// A request whose body never comes: its handler is reading it once
	// the server asks for it (100 Continue).
	held, err := net.Dial("tcp", api)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := io.WriteString(held, "POST "+types.ClusterFetchPath+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("HTTP/1.1 100"))
	if _, err := io.ReadFull(held, line); err != nil || string(line) != "HTTP/1.1 100" {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}
	if _, err := io.WriteString(held, "{"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	cancel()
	pieces := "127.0.0.1:" + strconv.Itoa(c.Base.DownloadPort)
	for {
		conn, err := net.Dial("tcp", pieces)
		if err != nil {
			break
		}
		conn.Close()
		if time.Since(start) > time.Second {
			t.Fatalf("the piece port still took connections %v into shutdown, while an API request was held", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(d.shutdownWait + 5*time.Second):
		t.Fatal("no shutdown")
	}
}
