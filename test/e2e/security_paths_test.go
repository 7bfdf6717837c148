package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// rawGet sends path exactly as given (no client-side cleaning or
// escaping) and returns the status and up to 64 KiB of the body.
func rawGet(t *testing.T, addr, path string, headers map[string]string) (int, string) {
	t.Helper()
	st, body, _ := rawGetLoc(t, addr, path, headers)
	return st, body
}

// refused GETs path (following one redirect, as a client would: the peer
// server's mux redirects to the cleaned path) and says whether it was
// answered with an error status and without any secret bytes.
func refused(t *testing.T, addr, path string, headers map[string]string) (bool, string) {
	t.Helper()
	st, body, loc := rawGetLoc(t, addr, path, headers)
	what := fmt.Sprintf("HTTP %d", st)
	if st/100 == 3 && loc != "" {
		st, body, _ = rawGetLoc(t, addr, loc, headers)
		what += fmt.Sprintf(" -> %s HTTP %d", loc, st)
	}
	return st >= 400 && !leaked(body), fmt.Sprintf("%s, %d bytes, leaked=%v", what, len(body), leaked(body))
}

func rawGetLoc(t *testing.T, addr, path string, headers map[string]string) (int, string, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := writeRaw(c, addr, path, headers); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

// traversals are request paths that try to leave a served directory.
func traversals(prefix, inside string) []string {
	return []string{
		prefix + "../../../../etc/passwd",
		prefix + inside + "/../../../../../etc/passwd",
		prefix + "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
		prefix + "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
		prefix + "..%2f..%2f..%2f..%2fetc%2fpasswd",
		prefix + "%252e%252e%252fetc%252fpasswd",
		prefix + "..%5c..%5c..%5cetc%5cpasswd",
		prefix + inside + "%00",
		prefix + inside + "/",
		prefix + "%2fetc%2fpasswd",
		prefix + "//etc/passwd",
		prefix + ".",
		prefix,
	}
}

// leaked reports whether a body carries a line of /etc/passwd or of the
// planted secret.
func leaked(body string) bool {
	return strings.Contains(body, "root:") || strings.Contains(body, "TOPSECRET")
}

// The supernode's piece server serves only cache data files of tasks:
// traversal in any encoding, sidecars, a task file replaced by a symlink
// to /etc/passwd, a bucket directory that is a symlink out of the repo,
// and unknown names are all refused without leaking a byte.
func TestSecuritySupernodePieceServerPaths(t *testing.T) {
	o := newOrigin(t)
	data := randomData(2<<20, 71)
	u := o.add("/paths.bin", data)
	home := t.TempDir()
	sn := startSupernode(t, home)
	c := newClient(t, sn, "127.0.0.1-paths")
	reg := c.register(c.registerReq(u))
	waitCDN(t, sn, reg.TaskID, 20*time.Second)
	id := reg.TaskID
	bucket := filepath.Join(home, "repo", "download", id[:3])
	addr := Addr(sn.download)
	rng := map[string]string{"Range": "bytes=0-1000"}
	if st, _ := rawGet(t, addr, "/download/"+id[:3]+"/"+id, rng); st != http.StatusPartialContent {
		t.Fatalf("the real task file: HTTP %d", st)
	}
	// A secret beside the repository, and an outside directory laid out
	// like a bucket with a finished .meta copied from the real task.
	if err := os.WriteFile(filepath.Join(home, "secret"), []byte("TOPSECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(bucket, id+".meta"))
	if err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	fake := "zzz" + id[3:]
	if err := os.WriteFile(filepath.Join(outside, fake), []byte(strings.Repeat("TOPSECRET\n", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, fake+".meta"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(home, "repo", "download", "zzz")); err != nil {
		t.Fatal(err)
	}
	// A second name in the real bucket pointing at /etc/passwd, with a meta.
	linkID := id[:3] + strings.Repeat("0", len(id)-3)
	if err := os.Symlink("/etc/passwd", filepath.Join(bucket, linkID)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bucket, linkID+".meta"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	paths := append(traversals("/download/", id[:3]+"/"+id),
		"/download/"+id[:3]+"/"+id+".meta",
		"/download/"+id[:3]+"/"+id+".md5",
		"/download/"+id[:3]+"/"+id+"%2e%6d%65%74%61",
		"/download/"+id[:3]+"/"+linkID,
		"/download/zzz/"+fake,
		"/download/"+id[:3]+"/..%2f..%2f..%2fsecret",
		"/download/"+id[:3]+"/nosuchtask0000",
		"/download/../secret",
		"/secret",
		"/logs/app.log",
		"/download/"+id[:3]+"/../../../logs/app.log",
	)
	for _, p := range paths {
		for _, h := range []map[string]string{rng, nil} {
			if ok, what := refused(t, addr, p, h); !ok {
				t.Errorf("GET %q (range %v): %s", p, h != nil, what)
			}
		}
	}
	// The real task's data file swapped for a symlink: the task is known
	// and finished, yet the open refuses to follow the link.
	dataFile := filepath.Join(bucket, id)
	if err := os.Rename(dataFile, dataFile+"-moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", dataFile); err != nil {
		t.Fatal(err)
	}
	for _, h := range []map[string]string{rng, nil} {
		if ok, what := refused(t, addr, "/download/"+id[:3]+"/"+id, h); !ok {
			t.Errorf("task file replaced by a symlink: %s", what)
		}
	}
	if sn.Exited() {
		t.Fatal("supernode exited")
	}
}

// The dfget peer server serves only registered task files that are
// regular files directly in its data directory: a registered task's file
// replaced by a symlink to /etc/passwd, traversal in any encoding and
// unregistered names are refused without leaking a byte.
func TestSecurityPeerServerPaths(t *testing.T) {
	o := newOrigin(t)
	data := randomData(3<<20, 72)
	url := o.add("/peerpaths.bin", data)
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	if r := p.run(sn, "-u", url, "-o", filepath.Join(t.TempDir(), "out"), "--notbs"); r.code != 0 {
		t.Fatalf("download: exit %d %s", r.code, r.stdout)
	}
	port := peerServerPort(t, p)
	addr := fmt.Sprintf("127.0.0.2:%d", port)
	dataDir := filepath.Join(p.home, "data")
	entries, err := os.ReadDir(dataDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("data dir: %v %v", entries, err)
	}
	name := ""
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".service"); ok {
			name = n
		}
	}
	if name == "" {
		t.Fatalf("no .service file in %v", entries)
	}
	hdr := map[string]string{"Range": "bytes=0-1000", "pieceNum": "0", "pieceSize": "4194304"}
	if st, _ := rawGet(t, addr, "/peer/file/"+name, hdr); st != http.StatusPartialContent {
		t.Fatalf("the registered task file: HTTP %d", st)
	}
	if err := os.WriteFile(filepath.Join(p.home, "secret"), []byte("TOPSECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dataDir, "passwd.service")); err != nil {
		t.Fatal(err)
	}
	paths := append(traversals("/peer/file/", name),
		"/peer/file/passwd", "/peer/file/passwd.service", "/peer/file/"+name+".service",
		"/peer/file/..%2fsecret", "/peer/file/..%2f..%2fsecret", "/peer/file/%2e%2e%2fsecret", "/secret",
		"/peer/file/"+name+"%2f..%2f..%2fsecret", "/peer/file/unknown-task")
	for _, path := range paths {
		if ok, what := refused(t, addr, path, hdr); !ok {
			t.Errorf("GET %q: %s", path, what)
		}
	}
	// The registered task's own file swapped for a symlink.
	svc := filepath.Join(dataDir, name+".service")
	if err := os.Rename(svc, svc+"-moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", svc); err != nil {
		t.Fatal(err)
	}
	if ok, what := refused(t, addr, "/peer/file/"+name, hdr); !ok {
		t.Errorf("registered task file replaced by a symlink: %s", what)
	}
}

// peerServerPort reads the port the peer's server recorded in host.meta.
func peerServerPort(t *testing.T, p *dfgetPeer) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.home, "meta", "host.meta"))
	if err != nil {
		t.Fatal(err)
	}
	var m types.HostMeta
	if err := json.Unmarshal(b, &m); err != nil || m.ServicePort == 0 {
		t.Fatalf("host.meta %q: %v", b, err)
	}
	return m.ServicePort
}

// writeRaw writes a GET for path, byte for byte, with headers.
func writeRaw(c net.Conn, addr, path string, headers map[string]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", path, addr)
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	_, err := io.WriteString(c, b.String())
	return err
}
