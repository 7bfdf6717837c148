package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/pkg/rate"
)

func newTestConfig(t *testing.T) *Config {
	c := New()
	c.URL = "http://example.com/dir/file.tar?x=1"
	c.Home = t.TempDir()
	c.PropertyFile = filepath.Join(t.TempDir(), "none.yml")
	return c
}

func TestCompleteDefaultsAndDerived(t *testing.T) {
	c := newTestConfig(t)
	dir := t.TempDir()
	t.Chdir(dir)
	c.Filter = "x"
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if c.Output != filepath.Join(dir, "file.tar") {
		t.Errorf("output %q", c.Output)
	}
	if c.TaskURL != "http://example.com/dir/file.tar" {
		t.Errorf("task URL %q", c.TaskURL)
	}
	if !strings.HasPrefix(c.TaskFileName, "file.tar-") || c.Nodes.String() != "127.0.0.1:8002=1" {
		t.Errorf("task file %q nodes %q", c.TaskFileName, c.Nodes.String())
	}
	if c.LocalLimit != 0 || c.MinRate != DefaultMinRate || c.ClientQueue != DefaultClientQueue {
		t.Errorf("defaults: local %v min %v queue %d", c.LocalLimit, c.MinRate, c.ClientQueue)
	}
	if got := c.DownloadTimeout(64 * 1024 * 10); got != 20*time.Second {
		t.Errorf("timeout %v", got)
	}
	if got := c.DownloadTimeout(-1); got != DefaultUnknownLengthTimeout {
		t.Errorf("unknown-length timeout %v", got)
	}
}

func TestCompleteProperties(t *testing.T) {
	c := newTestConfig(t)
	c.Output = filepath.Join(t.TempDir(), "o")
	home := t.TempDir()
	c.Home = ""
	yml := "nodes:\n  - 10.0.0.1:8002=2\n  - 10.0.0.2\nlocalLimit: 10MB\nminRate: 1MB\ntotalLimit: 100M\nclientQueueSize: 9\nworkHome: " + home + "\n"
	if err := os.WriteFile(c.PropertyFile, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	c.TotalLimit = rate.MB // the flag wins
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if c.Nodes.String() != "10.0.0.1:8002=2,10.0.0.2:8002=1" || c.LocalLimit != 10*rate.MB || c.MinRate != rate.MB ||
		c.TotalLimit != rate.MB || c.ClientQueue != 9 || c.Home != home {
		t.Fatalf("merged config: nodes %s local %v min %v total %v queue %d home %s", c.Nodes.String(), c.LocalLimit,
			c.MinRate, c.TotalLimit, c.ClientQueue, c.Home)
	}
}

func TestCompleteRejects(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"output is a directory": func(c *Config) { c.Output = dir },
		"output under a file":   func(c *Config) { c.Output = filepath.Join(file, "x") },
		"bad url":               func(c *Config) { c.URL = "ftp://x/y" },
		"bad pattern":           func(c *Config) { c.Pattern = "torrent" },
		"bad md5":               func(c *Config) { c.Md5 = "xyz" },
		"digest no algorithm":   func(c *Config) { c.Digest = strings.Repeat("a", 64) },
		"digest short":          func(c *Config) { c.Digest = "sha256:" + strings.Repeat("a", 63) },
		"digest not hex":        func(c *Config) { c.Digest = "sha256:" + strings.Repeat("x", 64) },
		"digest unknown alg":    func(c *Config) { c.Digest = "sha3:" + strings.Repeat("a", 64) },
		"digest md5":            func(c *Config) { c.Digest = "md5:" + strings.Repeat("a", 32) },
		"digest blake3":         func(c *Config) { c.Digest = "blake3:" + strings.Repeat("a", 64) },
		"bad ip":                func(c *Config) { c.IP = "1.2.3" },
		"bad port":              func(c *Config) { c.Port = 80 },
		"bad header":            func(c *Config) { c.Headers = []string{"nocolon"} },
		"bad window":            func(c *Config) { c.Stream, c.WindowSize = true, 0 },
		"multi-range header":    func(c *Config) { c.Headers = []string{"Range: bytes=0-9,20-29"} },
		"two range headers":     func(c *Config) { c.Headers = []string{"Range: bytes=0-9", "range: bytes=20-29"} },
		"range not bytes":       func(c *Config) { c.Headers = []string{"Range: items=0-9"} },
		"range backwards":       func(c *Config) { c.Headers = []string{"Range: bytes=9-0"} },
		"range zero suffix":     func(c *Config) { c.Headers = []string{"Range: bytes=-0"} },
		"range signed":          func(c *Config) { c.Headers = []string{"Range: bytes=+5-9"} },
		"range spaced":          func(c *Config) { c.Headers = []string{"Range: bytes=5 - 9"} },
		"range past int64":      func(c *Config) { c.Headers = []string{"Range: bytes=9223372036854775808-"} },
	} {
		c := newTestConfig(t)
		c.Output = filepath.Join(dir, "out")
		mut(c)
		if err := c.Complete(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A well-formed --digest is accepted in either case.
func TestCompleteAcceptsSha256Digest(t *testing.T) {
	for _, v := range []string{"sha256:" + strings.Repeat("ab", 32), "SHA256:" + strings.Repeat("AB", 32)} {
		c := newTestConfig(t)
		c.Output = filepath.Join(t.TempDir(), "out")
		c.Digest = v
		if err := c.Complete(); err != nil {
			t.Errorf("--digest %s refused: %v", v, err)
		}
		if d, err := c.ExpectedDigest(); err != nil || d.Algorithm().String() != "sha256" {
			t.Errorf("ExpectedDigest of %s: %v %v", v, d, err)
		}
	}
}

// One byte range in any of its three forms is honoured (docs/dfget.md).
func TestCompleteAcceptsOneRange(t *testing.T) {
	for _, rg := range []string{"bytes=0-9", "bytes=10-", "bytes=-100", "bytes=5-5", "Bytes= 5-9", "bytes=9223372036854775807-"} {
		c := newTestConfig(t)
		c.Output = filepath.Join(t.TempDir(), "out")
		c.Headers = []string{"Range: " + rg}
		if err := c.Complete(); err != nil {
			t.Errorf("Range %q refused: %v", rg, err)
		}
	}
	c := newTestConfig(t)
	c.Output = filepath.Join(t.TempDir(), "out")
	c.Headers = []string{"Range: bytes=0-9,20-29"}
	if err := c.Complete(); err == nil || !strings.Contains(err.Error(), "several ranges") {
		t.Errorf("multi-range error is not clear: %v", err)
	}
}

func TestStreamOutputDash(t *testing.T) {
	c := newTestConfig(t)
	c.Output = "-"
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if !c.Stream || c.Output != "" {
		t.Fatalf("-o - gives stream %v output %q", c.Stream, c.Output)
	}
}

// FuzzRateFlag: rate strings given as flags parse or fail cleanly, never
// negative.
func FuzzRateFlag(f *testing.F) {
	for _, s := range []string{"20MB", "64k", "1.5G", "0", "-1", "1e400M", "NaN", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := New()
		fs := pflag.NewFlagSet("dfget", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.VarP(&c.LocalLimit, "locallimit", "s", "")
		if err := fs.Parse([]string{"--locallimit=" + s}); err != nil {
			return
		}
		if c.LocalLimit < 0 {
			t.Fatalf("%q parsed to negative %d", s, c.LocalLimit)
		}
	})
}

func TestPropertiesLogConfig(t *testing.T) {
	c := newTestConfig(t)
	c.Output = filepath.Join(t.TempDir(), "o")
	if err := os.WriteFile(c.PropertyFile, []byte("logConfig:\n  maxSize: 7\n  maxBackups: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if c.LogConfig.MaxSize != 7 || c.LogConfig.MaxBackups != 3 {
		t.Fatalf("logConfig %+v, want maxSize 7 maxBackups 3", c.LogConfig)
	}
}

func TestLegacyINIProperties(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, ini, nodes, err string
	}{
		{"v1 file", "; v1 dfget\n[node]\naddress = 10.0.0.1:8002=2, 10.0.0.2\n", "10.0.0.1:8002=2,10.0.0.2:8002=1", ""},
		{"other sections ignored", "[other]\naddress=1.2.3.4\n[Node]\n# comment\nAddress=10.0.0.3\n", "10.0.0.3:8002=1", ""},
		{"no node section", "[other]\nx=y\n", "127.0.0.1:8002=1", ""},
		{"bad line", "[node]\naddress\n", "", "line 2"},
		{"bad section", "[node\naddress=a\n", "", "unterminated section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestConfig(t)
			c.Output = filepath.Join(t.TempDir(), "o")
			c.PropertyFile = filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".conf")
			if err := os.WriteFile(c.PropertyFile, []byte(tc.ini), 0o644); err != nil {
				t.Fatal(err)
			}
			err := c.Complete()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Nodes.String(); got != tc.nodes {
				t.Fatalf("nodes %s, want %s", got, tc.nodes)
			}
		})
	}
}
