package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// servedSecrets lists what the supernode's piece port serves of its cached
// files that holds secret: every data file in the repo, fetched whole.
func servedSecrets(t *testing.T, sn *supernode, secret []byte) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(sn.home, "repo", "download", "*", "*"))
	var leaks []string
	for _, f := range files {
		if strings.Contains(filepath.Base(f), ".") {
			continue // .meta / .md5 sidecars are never served
		}
		rel := strings.TrimPrefix(f, filepath.Join(sn.home, "repo"))
		st, body := rawGet(t, Addr(sn.download), rel, map[string]string{"Range": "bytes=0-65535"})
		if bytes.Contains([]byte(body), secret) {
			leaks = append(leaks, fmt.Sprintf("%s: HTTP %d %q", rel, st, body[:min(len(body), 80)]))
		}
	}
	return leaks
}

// Without --source-allow, a source on the supernode's loopback (by address,
// by a name that resolves there, IPv4-mapped or unspecified) is refused
// before any byte is fetched, with an error that says why; nothing of it
// can be read from the piece port.
func TestSecuritySSRFLoopbackSourceRefused(t *testing.T) {
	o := newOrigin(t)
	secret := []byte("SSRF-SECRET-of-a-loopback-service")
	u := o.add("/internal", bytes.Repeat(secret, 2000))
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	sn := startSupernode(t, t.TempDir(), "--source-allow", "")
	c := newClient(t, sn, "127.0.0.1-ssrf")
	for _, tc := range []struct{ url, addr, class string }{
		{u, "127.0.0.1", "loopback"},
		{"http://localhost:" + port + "/internal", "127.0.0.1", "loopback"},
		{"http://[::ffff:127.0.0.1]:" + port + "/internal", "127.0.0.1", "loopback"},
		{"http://0.0.0.0:" + port + "/internal", "0.0.0.0", "unspecified"},
	} {
		status, body := c.registerRaw(c.registerReq(tc.url))
		want := fmt.Sprintf("source address %s is refused: %s; allow it with --source-allow", tc.addr, tc.class)
		if status == http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("register %s: HTTP %d %.300s\nwant an error with %q", tc.url, status, body, want)
		}
	}
	if n := o.count("/internal", http.StatusOK) + o.count("/internal", http.StatusPartialContent); n != 0 {
		t.Errorf("the loopback origin answered the supernode %d times", n)
	}
	if leaks := servedSecrets(t, sn, secret); len(leaks) > 0 {
		t.Errorf("the piece port serves the loopback service's answer: %v", leaks)
	}
	// dfget shows the reason and, with --notbs, fails.
	p := newDfgetPeer(t, "127.0.0.2")
	dst := filepath.Join(t.TempDir(), "out")
	if r := p.run(sn, "-u", u, "-o", dst, "--notbs"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "is refused: loopback") {
		t.Errorf("dfget --notbs of a loopback source: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// A peer server's control endpoints trust only its own user's dfgets: a
// supernode on the same host that is allowed to fetch loopback sources and
// is told to fetch http://<peer server>/check/<name> gets a refusal, and
// /check does not run (the name is not registered with the peer server).
func TestSecuritySSRFPeerServerCheck(t *testing.T) {
	o := newOrigin(t)
	data := randomData(1<<20, 111)
	u := o.add("/warm.bin", data)
	sn := startSupernode(t, t.TempDir(), "--source-allow", "127.0.0.1,127.0.0.2")
	p := newDfgetPeer(t, "127.0.0.2")
	if r := p.run(sn, "-u", u, "-o", filepath.Join(t.TempDir(), "out"), "--notbs"); r.code != 0 {
		t.Fatalf("download: exit %d %s", r.code, r.stdout)
	}
	addr := fmt.Sprintf("127.0.0.2:%d", peerServerPort(t, p))
	probe := "http://" + addr + "/check/ssrf-probe"
	c := newClient(t, sn, "127.0.0.1-ssrfcheck")
	status, body := c.registerRaw(c.registerReq(probe))
	if status == http.StatusOK && bytes.Contains(body, []byte(`"code":200`)) {
		time.Sleep(time.Second) // let the CDN write the reply
		t.Errorf("registering the peer server's /check succeeded: %.300s; piece port serves %v", body,
			servedSecrets(t, sn, []byte("ssrf-probe@")))
	} else if !strings.Contains(string(body), "403") {
		t.Errorf("register %s: HTTP %d %.300s, want the peer server's 403", probe, status, body)
	}
	hdr := map[string]string{"Range": "bytes=0-1000", "pieceNum": "0", "pieceSize": "4194304"}
	if st, b := rawGet(t, addr, "/peer/file/ssrf-probe", hdr); !strings.Contains(b, "unknown task file") {
		t.Errorf("/check ran for the supernode: the peer server knows ssrf-probe (HTTP %d %q)", st, b)
	}
	// The token that proves a local dfget is readable by the user only.
	if st, err := os.Stat(filepath.Join(p.home, "meta", "host.meta")); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("host.meta: mode %v, want 0600", st.Mode().Perm())
	}
}
