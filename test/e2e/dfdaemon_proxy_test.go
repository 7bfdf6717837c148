package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// dfdaemon as an HTTP proxy with v1 proxies rules: a layer blob GET that
// matches a swarm rule is served through the swarm, as the same
// content-addressed task as through the mirror; a direct rule's request
// goes to the registry as it is.
func TestDfdaemonProxyRulesUseTheSwarm(t *testing.T) {
	reg, _ := startRegistry(t)
	dir, img := writeOCI(t, 220, 3<<20)
	pushOCI(t, dir, reg, "team/app:v1")
	sn := startSupernode(t, t.TempDir())
	conf := filepath.Join(t.TempDir(), "dfdaemon.yml")
	rules := "proxies:\n- regx: /manifests/\n  direct: true\n- regx: blobs/sha256.*\n"
	if err := os.WriteFile(conf, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDfdaemon(t, reg, sn, "--config", conf)
	proxyURL, _ := url.Parse("http://" + d.addr)
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	get := func(path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+reg+path, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s through the proxy: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s through the proxy: %v", path, err)
		}
		return resp.StatusCode, b
	}
	layer := img.Layers[0]
	if code, b := get("/v2/team/app/blobs/" + layer); code != http.StatusOK || string(b) != string(img.Blobs[layer]) {
		t.Fatalf("layer through the proxy: %d, %d bytes; want 200 and the %d pushed", code, len(b), len(img.Blobs[layer]))
	}
	d.wantStreams(t, "p2p", 1)
	if code, _ := get("/v2/team/app/manifests/v1"); code != http.StatusOK {
		t.Fatalf("manifest through the proxy: %d", code)
	}
	d.wantStreams(t, "p2p", 1)
	if n := d.metric(t, "dragonfly_dfdaemon_proxy_requests_total"); n < 2 {
		t.Fatalf("%v proxy requests counted, want 2", n)
	}
}
