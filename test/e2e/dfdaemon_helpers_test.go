package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// needTool returns the path of an external program the dfdaemon tests run
// (docker-registry, skopeo). Without it the test is skipped, except in CI
// (CI set), where .ci/run installs it and its absence is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed (.ci/run installs it): %v", name, err)
	}
	t.Skipf("%s not installed (Debian package %s; .ci/run installs it)", name, name)
	return ""
}

// startRegistry runs the Distribution registry (Debian docker-registry) on
// loopback with filesystem storage in a temp dir; it returns its address
// and storage root.
func startRegistry(t *testing.T) (addr, root string) {
	t.Helper()
	bin := needTool(t, "docker-registry")
	dir := t.TempDir()
	root = filepath.Join(dir, "storage")
	addr = Addr(FreePort(t))
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n"+
		"  delete:\n    enabled: true\nhttp:\n  addr: %s\n", root, addr)
	cfgPath := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	StartProcess(t, "registry-"+addr, bin, "serve", cfgPath)
	WaitPort(t, addr, 10*time.Second)
	return addr, root
}

// image is a test image: its layers and config by digest.
type image struct {
	blobs  map[string][]byte // "sha256:<hex>" -> content
	layers []string
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// writeOCI writes an OCI image layout of random layers of the given sizes
// (seeded) into a new directory and returns it with the image.
func writeOCI(t *testing.T, seed uint64, sizes ...int) (string, *image) {
	t.Helper()
	dir := t.TempDir()
	img := &image{blobs: map[string][]byte{}}
	put := func(b []byte) string {
		d := digestOf(b)
		img.blobs[d] = b
		p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	var layers []desc
	var diffIDs []string
	for i, n := range sizes {
		// A gzip stream (stored, not compressed) of random bytes: skopeo
		// keeps a compressed layer as it is, where it would compress a
		// plain one on push and change its digest.
		raw := randomData(n, seed+uint64(i))
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		d := put(buf.Bytes())
		img.layers = append(img.layers, d)
		diffIDs = append(diffIDs, digestOf(raw))
		layers = append(layers, desc{"application/vnd.oci.image.layer.v1.tar+gzip", d, buf.Len()})
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	cfgDesc := desc{"application/vnd.oci.image.config.v1+json", put(cfg), len(cfg)}
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": cfgDesc, "layers": layers})
	manDesc := desc{"application/vnd.oci.image.manifest.v1+json", put(man), len(man)}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{manDesc}})
	for name, b := range map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": index} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, img
}

// skopeo runs skopeo with args (at most 3 minutes) and returns its exit
// status and output.
func skopeo(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := needTool(t, "skopeo")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--insecure-policy"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("skopeo %v did not finish in time: %s", args, out)
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("skopeo: %v", err)
	}
	return 0, string(out)
}

// pushOCI pushes the OCI layout dir to registry addr as name:tag.
func pushOCI(t *testing.T, dir, addr, ref string) {
	t.Helper()
	if code, out := skopeo(t, "copy", "--dest-tls-verify=false", "oci:"+dir, "docker://"+addr+"/"+ref); code != 0 {
		t.Fatalf("push %s: exit %d: %s", ref, code, out)
	}
}

// mirrorConf writes a registries.conf whose registry location has the
// dfdaemon at mirror as its only mirror. The location itself does not
// resolve, so a pull that works came through the mirror.
func mirrorConf(t *testing.T, location, mirror string) string {
	t.Helper()
	conf := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n",
		location, mirror)
	p := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pullDir copies ref to a dir: layout (one file per blob, named by hex
// digest) and returns the directory; code is skopeo's exit status.
func pullDir(t *testing.T, ref string, extra ...string) (string, int, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pulled")
	args := append([]string{"copy", "--src-tls-verify=false"}, extra...)
	code, out := skopeo(t, append(args, "docker://"+ref, "dir:"+dir)...)
	return dir, code, out
}

// checkPulled compares every layer and the config of img with the files
// skopeo wrote to dir.
func checkPulled(t *testing.T, dir string, img *image) {
	t.Helper()
	for d, want := range img.blobs {
		got, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(d, "sha256:")))
		if os.IsNotExist(err) {
			continue // the manifest: skopeo stores it as manifest.json
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("blob %s: %d bytes pulled differ from the %d pushed", d, len(got), len(want))
		}
	}
	for _, d := range img.layers {
		if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(d, "sha256:"))); err != nil {
			t.Fatalf("layer %s not pulled: %v", d, err)
		}
	}
}

// countingProxy sits in front of a registry: it counts the blob GETs that
// got the registry's bytes (status 200) per digest, and can demand a
// bearer token (the token flow).
type countingProxy struct {
	addr  string
	mu    sync.Mutex
	blobs map[string]int
	// token, when set, is required as "Authorization: Bearer <token>";
	// GET /token hands it out.
	token string
}

func startCountingProxy(t *testing.T, registry, token string) *countingProxy {
	t.Helper()
	cp := &countingProxy{blobs: map[string]int{}, token: token}
	target, _ := url.Parse("http://" + registry)
	rp := httputil.NewSingleHostReverseProxy(target)
	l, err := listenOn("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			_ = json.NewEncoder(w).Encode(map[string]string{"token": cp.token})
			return
		}
		if cp.token != "" && r.Header.Get("Authorization") != "Bearer "+cp.token {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, cp.addr))
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		sr := &statusRecorder{ResponseWriter: w}
		rp.ServeHTTP(sr, r)
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet && sr.status == http.StatusOK {
			cp.mu.Lock()
			cp.blobs[r.URL.Path[i+len("/blobs/"):]]++
			cp.mu.Unlock()
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return cp
}

// reads is how often blob d was served whole by the registry.
func (c *countingProxy) reads(d string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobs[d]
}

// dfdaemonProc is a started bin/dfdaemon.
type dfdaemonProc struct {
	*Proc
	addr string
	home string
}

// startDfdaemon runs a dfdaemon mirroring registry with its own work home
// (hence its own peer server), the supernode sn (nil: a closed port).
func startDfdaemon(t *testing.T, registry string, sn *supernode, extra ...string) *dfdaemonProc {
	t.Helper()
	port := FreePort(t)
	home := filepath.Join(t.TempDir(), "home")
	node := Addr(FreePort(t)) // nobody listens: the supernode is unreachable
	if sn != nil {
		node = Addr(sn.api)
	}
	args := append([]string{"--port", strconv.Itoa(port), "--registry", "http://" + registry, "--node", node,
		"--workHome", home, "--ratelimit", "0", "--config", "/dev/null", "--verbose"}, extra...)
	p := StartProcess(t, "dfdaemon-"+strconv.Itoa(port), Binary(t, "dfdaemon"), args...)
	addr := Addr(port)
	WaitPort(t, addr, 10*time.Second)
	d := &dfdaemonProc{Proc: p, addr: addr, home: home}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(home, "logs", "dfdaemon.log"))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- dfdaemon %s log tail ---\n%s", addr, b)
		}
	})
	return d
}

// metric sums the dfdaemon's samples whose line starts with prefix.
func (d *dfdaemonProc) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		t.Fatalf("dfdaemon metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// signedStorage stands for a registry's blob storage behind signed
// redirects (S3, GCS): blob GETs to the front get a 307 to a storage URL
// with a signature unique to the request; the storage serves only signed
// requests without an Authorization header (as S3 refuses both), and
// counts its reads per digest.
type signedStorage struct {
	front string
	mu    sync.Mutex
	reads map[string]int
	sig   int
}

func startSignedStorage(t *testing.T, registry string) *signedStorage {
	t.Helper()
	ss := &signedStorage{reads: map[string]int{}}
	target, _ := url.Parse("http://" + registry)
	rp := httputil.NewSingleHostReverseProxy(target)
	storage := http.NewServeMux()
	storage.HandleFunc("/storage/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("sig") == "" || r.Header.Get("Authorization") != "" {
			http.Error(w, "signature required, and no Authorization", http.StatusForbidden)
			return
		}
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/storage")
		r.URL.RawQuery = ""
		sr := &statusRecorder{ResponseWriter: w}
		rp.ServeHTTP(sr, r)
		if i := strings.Index(r.URL.Path, "/blobs/"); i >= 0 && sr.status == http.StatusOK {
			ss.mu.Lock()
			ss.reads[r.URL.Path[i+len("/blobs/"):]]++
			ss.mu.Unlock()
		}
	})
	sl, err := listenOn("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := listenOn("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	storageAddr := sl.Addr().String()
	ss.front = fl.Addr().String()
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			ss.mu.Lock()
			ss.sig++
			sig := ss.sig
			ss.mu.Unlock()
			http.Redirect(w, r, fmt.Sprintf("http://%s/storage%s?sig=%d", storageAddr, r.URL.Path, sig), http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	})
	for _, s := range []struct {
		l net.Listener
		h http.Handler
	}{{sl, storage}, {fl, front}} {
		srv := &http.Server{Handler: s.h}
		go func() { _ = srv.Serve(s.l) }()
		t.Cleanup(func() { srv.Close() })
	}
	return ss
}

func (s *signedStorage) readsOf(d string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[d]
}
