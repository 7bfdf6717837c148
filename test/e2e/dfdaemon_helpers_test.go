package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// startRegistry runs the Distribution registry (Debian docker-registry) on
// loopback with filesystem storage in a temp dir; it returns its address
// and storage root.
func startRegistry(t *testing.T) (addr, root string) {
	t.Helper()
	bin := imagetest.NeedTool(t, "docker-registry")
	dir := t.TempDir()
	root = filepath.Join(dir, "storage")
	addr = Addr(FreePort(t))
	cfgPath := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfgPath, imagetest.RegistryConfig(root, addr), 0o644); err != nil {
		t.Fatal(err)
	}
	StartProcess(t, "registry-"+addr, bin, "serve", cfgPath)
	WaitPort(t, addr, 10*time.Second)
	return addr, root
}

// writeOCI writes an OCI image layout of random layers of the given sizes
// (seeded) into a new directory and returns it with the image.
func writeOCI(t *testing.T, seed uint64, sizes ...int) (string, *imagetest.Image) {
	t.Helper()
	dir := t.TempDir()
	var layers [][]byte
	for i, n := range sizes {
		layers = append(layers, randomData(n, seed+uint64(i)))
	}
	img, err := imagetest.WriteOCI(dir, layers)
	if err != nil {
		t.Fatal(err)
	}
	return dir, img
}

// skopeo runs skopeo with args (at most 3 minutes) and returns its exit
// status and output.
func skopeo(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := imagetest.NeedTool(t, "skopeo")
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
// dfdaemon at mirror as its only mirror (imagetest.MirrorConf).
func mirrorConf(t *testing.T, location, mirror string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(p, imagetest.MirrorConf(location, mirror), 0o644); err != nil {
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

// checkPulled compares the blobs skopeo wrote to dir with img.
func checkPulled(t *testing.T, dir string, img *imagetest.Image) {
	t.Helper()
	if err := imagetest.CheckDir(dir, img); err != nil {
		t.Fatal(err)
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
	v, _ := sampleSum(strings.NewReader(d.metricsPage(t)), prefix)
	return v
}

func (d *dfdaemonProc) metricsPage(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		t.Fatalf("dfdaemon metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("dfdaemon metrics: %v", err)
	}
	return string(b)
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

// pull pulls ref (on the registry "primary.invalid") with skopeo through
// d only, and checks the blobs against img.
func (d *dfdaemonProc) pull(t *testing.T, ref string, img *imagetest.Image) {
	t.Helper()
	got, code, out := d.tryPull(t, ref)
	if code != 0 {
		t.Fatalf("pull %s through dfdaemon %s: exit %d: %s", ref, d.addr, code, out)
	}
	checkPulled(t, got, img)
}

// tryPull is pull without checks: the pulled directory, skopeo's exit
// status and output.
func (d *dfdaemonProc) tryPull(t *testing.T, ref string) (string, int, string) {
	t.Helper()
	return pullDir(t, "primary.invalid/"+ref, "--registries-conf", mirrorConf(t, "primary.invalid", d.addr))
}

// wantStreams fails unless the dfdaemon counts exactly n streams with
// result once no stream is in flight: a stream is counted when its
// download ends, which can be just after the client read the last byte,
// and before it leaves the in-flight gauge, so a late stream cannot slip
// past an "exactly n" or a "none".
func (d *dfdaemonProc) wantStreams(t *testing.T, result string, n int) {
	t.Helper()
	series := `dragonfly_dfdaemon_streams_total{result="` + result + `"}`
	var got, inFlight float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		page := d.metricsPage(t)
		var lines, flightLines int
		got, lines = sampleSum(strings.NewReader(page), series)
		inFlight, flightLines = sampleSum(strings.NewReader(page), "dragonfly_dfdaemon_streams_in_flight ")
		if lines == 0 || flightLines == 0 {
			t.Fatalf("dfdaemon %s: %s or streams_in_flight not on /metrics", d.addr, series)
		}
		if (inFlight == 0 && got >= float64(n)) || time.Now().After(deadline) {
			break
		}
	}
	if got != float64(n) || inFlight != 0 {
		t.Fatalf("dfdaemon %s: %v streams with result %s (%v in flight), want %d", d.addr, got, result, inFlight, n)
	}
}

// wantLayersReadOnce fails unless reads (a source's count of whole reads
// by digest) is 1 for every layer of img.
func wantLayersReadOnce(t *testing.T, img *imagetest.Image, reads func(string) int) {
	t.Helper()
	for _, l := range img.Layers {
		if n := reads(l); n != 1 {
			t.Fatalf("layer %s read %d times from its source, want once (by the supernode's CDN)", l, n)
		}
	}
}

// logContains reports whether the dfdaemon's log holds s.
func (d *dfdaemonProc) logContains(s string) bool {
	b, _ := os.ReadFile(filepath.Join(d.home, "logs", "dfdaemon.log"))
	return bytes.Contains(b, []byte(s))
}
