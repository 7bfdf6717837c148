package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary YAML to Load and Validate: an error or a valid
// configuration, never a panic; a valid one keeps its invariants.
func FuzzLoad(f *testing.F) {
	f.Add("base:\n  listenPort: 8002\n  sourceAllow: [a, b]\n  authToken: t\n")
	f.Add("base:\n  maxBandwidth: 200MB\n  taskExpireTime: 3m\n")
	f.Add("base: [1, 2]\n")
	f.Add("base:\n  tlsCert: /x\n")
	f.Fuzz(func(t *testing.T, doc string) {
		path := filepath.Join(t.TempDir(), "sn.yml")
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := Default()
		cfg.Base.AdvertiseIP = "127.0.0.1" // no interface lookup per input
		if err := Load(&cfg, path, true); err != nil {
			return
		}
		if cfg.Base.AdvertiseIP == "" {
			cfg.Base.AdvertiseIP = "127.0.0.1"
		}
		b := cfg.Base
		if err := b.Validate(); err != nil {
			return
		}
		if b.ListenPort <= 0 || b.ListenPort > 65535 || b.ListenPort == b.DownloadPort || b.PeerDownLimit <= 0 ||
			(b.TLSCert == "") != (b.TLSKey == "") || !filepath.IsAbs(b.HomeDir) {
			t.Fatalf("Validate accepted %+v", b)
		}
	})
}

// FuzzHostList: Set never panics, drops blanks, and String/Set round-trip.
func FuzzHostList(f *testing.F) {
	f.Add("a.example,b")
	f.Add(" , ,x")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		var h HostList
		if err := h.Set(s); err != nil {
			t.Fatal(err)
		}
		for _, e := range h {
			if e == "" || strings.TrimSpace(e) != e {
				t.Fatalf("Set(%q) kept %q", s, e)
			}
		}
		var again HostList
		_ = again.Set(h.String())
		if again.String() != h.String() {
			t.Fatalf("round trip %q -> %q -> %q", s, h.String(), again.String())
		}
	})
}
