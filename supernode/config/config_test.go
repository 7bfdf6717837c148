package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/rate"
)

func TestDefaultsAreUsableWithoutRoot(t *testing.T) {
	c := Default()
	if !strings.Contains(c.Base.HomeDir, filepath.Join(".damselfly", "supernode")) {
		t.Fatalf("home dir %s", c.Base.HomeDir)
	}
	if c.Base.ListenPort != 8002 || c.Base.DownloadPort != 8001 || c.Base.PeerDownLimit != 4 || c.Base.PeerUpLimit != 5 ||
		c.Base.FailAccessInterval != 3*time.Minute || c.Base.CDNLimit() != 0 {
		t.Fatalf("defaults %+v", c.Base)
	}
	c.Base.AdvertiseIP = "127.0.0.1"
	if err := c.Base.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Base.SupernodeLoadLimit != 16 {
		t.Fatalf("supernode load limit %d", c.Base.SupernodeLoadLimit)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sn.yml")
	if err := os.WriteFile(p, []byte("base:\n  listenPort: 9002\n  maxBandwidth: 100MB\n  taskExpireTime: 5m\n  advertiseIP: 10.0.0.1\n  logConfig:\n    maxSize: 100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := Load(&c, p, true); err != nil {
		t.Fatal(err)
	}
	if c.Base.ListenPort != 9002 || c.Base.MaxBandwidth != 100*rate.MB || c.Base.TaskExpireTime != 5*time.Minute ||
		c.Base.DownloadPort != 8001 || c.Base.LogConfig.MaxSize != 100 || c.Base.LogConfig.MaxBackups != 1 {
		t.Fatalf("loaded %+v", c.Base)
	}
	if got := c.Base.CDNLimit(); got != 80*rate.MB {
		t.Fatalf("cdn limit %s, want 80MB", got)
	}
	if err := Load(&c, filepath.Join(dir, "missing.yml"), true); err == nil {
		t.Fatal("missing explicit config accepted")
	}
	if err := Load(&c, filepath.Join(dir, "missing.yml"), false); err != nil {
		t.Fatalf("missing default config: %v", err)
	}
	if err := os.WriteFile(p, []byte("base: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Load(&c, p, true); err == nil {
		t.Fatal("bad yaml accepted")
	}
	out, err := Marshal(Default())
	if err != nil || !strings.Contains(string(out), "listenPort: 8002") || !strings.Contains(string(out), "maxBandwidth: 0B") {
		t.Fatalf("marshal: %v\n%s", err, out)
	}
}

func TestValidate(t *testing.T) {
	for name, mod := range map[string]func(*Base){
		"pattern":   func(b *Base) { b.CDNPattern = "x" },
		"port":      func(b *Base) { b.ListenPort = 0 },
		"same port": func(b *Base) { b.DownloadPort = b.ListenPort },
		"ip":        func(b *Base) { b.AdvertiseIP = "::1" },
		"limits":    func(b *Base) { b.PeerDownLimit = 0 },
		"expire":    func(b *Base) { b.TaskExpireTime = 0 },
		"log size":  func(b *Base) { b.LogConfig.MaxSize = -1 },
		// A long poll dfget's /peer/task timeout (10 s) would cut.
		"piece wait": func(b *Base) { b.PieceWait = 8 * time.Second },
	} {
		b := Default().Base
		b.AdvertiseIP = "127.0.0.1"
		mod(&b)
		if err := b.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMarshalRedactsToken(t *testing.T) {
	cfg := Default()
	cfg.Base.AuthToken = "s3cret"
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "<redacted>") {
		t.Fatalf("token not redacted:\n%s", out)
	}
}

// The cluster key takes dfget's node syntax as a YAML list or one string,
// survives a round trip through Marshal, and refuses a bad node.
func TestClusterKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sn.yml")
	for _, doc := range []string{
		"base:\n  cluster: [\"10.0.0.1:8002=2\", \"sn.example\"]\n",
		"base:\n  cluster: 10.0.0.1:8002=2, sn.example\n",
	} {
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		c := Default()
		if err := Load(&c, p, true); err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if got := c.Base.Cluster.String(); got != "10.0.0.1:8002=2,sn.example:8002=1" {
			t.Fatalf("%q: cluster %s", doc, got)
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		again := Default()
		if err := Load(&again, p, true); err != nil || again.Base.Cluster.String() != c.Base.Cluster.String() {
			t.Fatalf("round trip: %v %s\n%s", err, again.Base.Cluster.String(), out)
		}
	}
	if err := os.WriteFile(p, []byte("base:\n  cluster: [\"a:99999\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := Load(&c, p, true); err == nil || !strings.Contains(err.Error(), "cluster") {
		t.Fatalf("bad node accepted: %v", err)
	}
	c.Base.AdvertiseIP, c.Base.ListenPort = "10.0.0.1", 8002
	if c.Base.ClusterSelf() != "10.0.0.1:8002" {
		t.Fatal(c.Base.ClusterSelf())
	}
}

func TestPreheatSettings(t *testing.T) {
	c := Default()
	if c.Base.PreheatExpireTime != 24*time.Hour || c.Base.PreheatLimit != 8 || c.Base.PreheatMaxRecords != 10000 {
		t.Fatalf("preheat defaults %v %d %d", c.Base.PreheatExpireTime, c.Base.PreheatLimit, c.Base.PreheatMaxRecords)
	}
	p := filepath.Join(t.TempDir(), "sn.yml")
	if err := os.WriteFile(p, []byte("base:\n  preheatExpireTime: 1h\n  preheatLimit: 2\n  preheatMaxRecords: 50\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Load(&c, p, true); err != nil {
		t.Fatal(err)
	}
	if c.Base.PreheatExpireTime != time.Hour || c.Base.PreheatLimit != 2 || c.Base.PreheatMaxRecords != 50 {
		t.Fatalf("loaded preheat settings %v %d %d", c.Base.PreheatExpireTime, c.Base.PreheatLimit, c.Base.PreheatMaxRecords)
	}
	c.Base.AdvertiseIP = "127.0.0.1"
	c.Base.PreheatLimit = -1
	if err := c.Base.Validate(); err == nil {
		t.Fatal("negative preheat limit accepted")
	}
}

// pieceWait up to its bound is accepted; above it refused.
func TestPieceWaitBound(t *testing.T) {
	for wait, ok := range map[time.Duration]bool{0: true, MaxPieceWait: true, MaxPieceWait + time.Millisecond: false} {
		b := Default().Base
		b.AdvertiseIP = "127.0.0.1"
		b.PieceWait = wait
		if err := b.Validate(); (err == nil) != ok {
			t.Errorf("pieceWait %v: %v", wait, err)
		}
	}
}

// cdnFillLimit defaults to DefaultCDNFillLimit, is read from the YAML
// file, and must be at least 1.
func TestCDNFillLimit(t *testing.T) {
	c := Default()
	if c.Base.CDNFillLimit != DefaultCDNFillLimit || DefaultCDNFillLimit != 16 {
		t.Fatalf("default cdn fill limit %d", c.Base.CDNFillLimit)
	}
	p := filepath.Join(t.TempDir(), "sn.yml")
	if err := os.WriteFile(p, []byte("base:\n  cdnFillLimit: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Load(&c, p, true); err != nil || c.Base.CDNFillLimit != 3 {
		t.Fatalf("loaded cdnFillLimit %d, %v", c.Base.CDNFillLimit, err)
	}
	for limit, ok := range map[int]bool{1: true, 3: true, 0: false, -1: false} {
		b := Default().Base
		b.AdvertiseIP = "127.0.0.1"
		b.CDNFillLimit = limit
		err := b.Validate()
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "cdn-fill-limit")) {
			t.Errorf("cdnFillLimit %d: %v", limit, err)
		}
	}
}

// Binding clients to their registration's address is on unless the file
// turns it off; a file that does not name the key keeps it on.
func TestBindClientAddress(t *testing.T) {
	for yml, want := range map[string]bool{"base:\n  listenPort: 8002\n": true, "base:\n  bindClientAddress: false\n": false} {
		c := Default()
		p := filepath.Join(t.TempDir(), "sn.yml")
		if err := os.WriteFile(p, []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Load(&c, p, true); err != nil || c.Base.BindClientAddress != want {
			t.Errorf("%q: bindClientAddress %t %v, want %t", yml, c.Base.BindClientAddress, err, want)
		}
	}
}
