package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// zeros is an endless body of '0' bytes (never held in memory).
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

// Bodies and headers have size limits: a 64 MiB registration, metrics
// report or preheat is refused with the v1 error body (not read to the end,
// no crash), and a 2 MiB header is refused by all three servers.
func TestSecurityRequestLimits(t *testing.T) {
	o := newOrigin(t)
	url := o.add("/limits.bin", randomData(1<<20, 81))
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	if r := p.run(sn, "-u", url, "-o", filepath.Join(t.TempDir(), "out"), "--notbs"); r.code != 0 {
		t.Fatalf("download: exit %d %s", r.code, r.stdout)
	}
	peerAddr := fmt.Sprintf("127.0.0.2:%d", peerServerPort(t, p))

	huge := func(path, prefix string) (int, []byte, error) {
		body := io.MultiReader(strings.NewReader(prefix), io.LimitReader(zeros{}, 64<<20))
		req, _ := http.NewRequest(http.MethodPost, sn.apiURL+path, body)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := httpc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		t.Logf("POST %s with 64 MiB: HTTP %d in %v", path, resp.StatusCode, time.Since(start).Round(time.Millisecond))
		return resp.StatusCode, b, nil
	}
	st, b, err := huge("/peer/registry", `{"rawUrl":"`)
	var e types.ErrorResponse
	if err != nil || st != http.StatusInternalServerError || json.Unmarshal(b, &e) != nil || e.Code != types.CodeParamError ||
		!strings.Contains(e.Message, "too large") {
		t.Errorf("huge registration: HTTP %d %q %v, want 500 {code:501, message: ...too large}", st, b, err)
	}
	for _, path := range []string{"/task/metrics", "/preheats", "/api/v1/peers"} {
		// The server may close the connection before reading the whole
		// body; a refused status or a reset are both a refusal.
		st, b, err := huge(path, `{"x":"`)
		switch {
		case err != nil && !closedByServer(err):
			t.Errorf("huge body to %s: %v, want an HTTP error or the connection closed by the server", path, err)
		case err == nil && st < 400:
			t.Errorf("huge body to %s: HTTP %d %q", path, st, b)
		}
	}
	bigHeader := map[string]string{"X-Pad": strings.Repeat("a", 2<<20)}
	for _, addr := range []string{Addr(sn.api), Addr(sn.download), peerAddr} {
		st, _, err := rawTry(addr, "/_ping", bigHeader)
		switch {
		case err != nil && !closedByServer(err):
			t.Errorf("%s: 2 MiB header: %v, want an HTTP error or the connection closed by the server", addr, err)
		case err == nil && st < 400:
			t.Errorf("%s: 2 MiB header answered HTTP %d", addr, st)
		}
	}
	// Still serving after all that.
	if st, body := rawGet(t, Addr(sn.api), "/_ping", nil); st != 200 || body != "OK" {
		t.Fatalf("/_ping after oversized requests: %d %q", st, body)
	}
}

// closedByServer says whether err is the server refusing a request by
// closing the connection during or after the write (a reset, a broken
// pipe, EOF), and not a failed dial or a timeout, which refuse nothing.
func closedByServer(err error) bool {
	var ne net.Error
	var op *net.OpError
	if errors.As(err, &ne) && ne.Timeout() || errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// rawTry is rawGet without failing the test on transport errors (a server
// may reset a connection whose request it refuses); a connection closed
// with nothing sent back is io.EOF.
func rawTry(addr, path string, headers map[string]string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if err := writeRaw(c, addr, path, headers); err != nil {
		return 0, "", err
	}
	buf, err := io.ReadAll(io.LimitReader(c, 1<<16))
	if err == nil && len(buf) == 0 {
		return 0, "", io.EOF
	}
	var st int
	if _, perr := fmt.Sscanf(string(buf), "HTTP/1.1 %d", &st); perr != nil {
		return 0, string(buf), errors.Join(err, perr)
	}
	return st, string(buf), nil
}

// Slowloris: a client that sends its request header one byte every 2 s,
// and one that connects and sends nothing, are cut off by the header
// timeout (10 s) of the supernode API, its piece server and the peer
// server; they do not hold a connection for minutes.
func TestSecuritySlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: waits for the 10 s header timeouts")
	}
	o := newOrigin(t)
	url := o.add("/slow.bin", randomData(1<<20, 82))
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	if r := p.run(sn, "-u", url, "-o", filepath.Join(t.TempDir(), "out"), "--notbs", "--alivetime", "5m"); r.code != 0 {
		t.Fatalf("download: exit %d %s", r.code, r.stdout)
	}
	peerAddr := fmt.Sprintf("127.0.0.2:%d", peerServerPort(t, p))
	const limit = 25 * time.Second // 10 s timeout, generous slack for a loaded machine
	var wg sync.WaitGroup
	for _, addr := range []string{Addr(sn.api), Addr(sn.download), peerAddr} {
		for _, trickle := range []bool{true, false} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := heldFor(addr, trickle, limit+10*time.Second)
				t.Logf("%s trickle=%v: closed by the server after %v (%v)", addr, trickle, d.Round(100*time.Millisecond), err)
				if err != nil || d > limit {
					t.Errorf("%s trickle=%v: connection held %v (%v), want closed within %v", addr, trickle, d, err, limit)
				}
			}()
		}
	}
	wg.Wait()
	if st, body := rawGet(t, Addr(sn.api), "/_ping", nil); st != 200 || body != "OK" {
		t.Fatalf("/_ping afterwards: %d %q", st, body)
	}
	if _, err := os.Stat(filepath.Join(p.home, "meta", "server.pid")); err != nil {
		t.Fatalf("peer server gone: %v", err)
	}
}

// heldFor opens a connection and either trickles a never-ending request
// header or stays silent, and returns how long until the server closes it.
func heldFor(addr string, trickle bool, max time.Duration) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = c.SetReadDeadline(time.Now().Add(max))
		_, _ = io.Copy(io.Discard, c) // returns on EOF/reset (or our deadline)
	}()
	if trickle {
		if _, err := io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			return time.Since(start), nil
		}
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-closed:
				return time.Since(start), nil
			case <-tick.C:
				if _, err := c.Write([]byte("a")); err != nil {
					<-closed
					return time.Since(start), nil
				}
			}
		}
	}
	<-closed
	d := time.Since(start)
	if d >= max {
		return d, errors.New("not closed")
	}
	return d, nil
}
