package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A long output name gives a task file name the peer server takes (at
// most 255 bytes), still made from the output's name and the sign.
func TestLongOutputTaskFileName(t *testing.T) {
	c := newTestConfig(t)
	name := strings.Repeat("n", 250)
	c.Output = filepath.Join(t.TempDir(), name)
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if len(c.TaskFileName) > 255 || !strings.HasPrefix(c.TaskFileName, name[:50]) ||
		!strings.HasSuffix(c.TaskFileName, "-"+c.Sign) {
		t.Errorf("task file name of a 250-byte output: %d bytes %q", len(c.TaskFileName), c.TaskFileName)
	}
}

// Outputs and flags refused before any network work (exit 1): the reviewer's
// cases. /dev/null is only checked here, never downloaded to.
func TestCompleteRejectsEdgeCases(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	toFifo := filepath.Join(dir, "to-fifo")
	for link, target := range map[string]string{dangling: filepath.Join(dir, "missing"), toFifo: fifo} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	for name, mut := range map[string]func(*Config){
		"output is a char device":    func(c *Config) { c.Output = "/dev/null" },
		"output is a FIFO":           func(c *Config) { c.Output = fifo },
		"output links to a FIFO":     func(c *Config) { c.Output = toFifo },
		"output is a dangling link":  func(c *Config) { c.Output = dangling },
		"header name with space":     func(c *Config) { c.Headers = []string{"Bad Header: x"} },
		"header value with CRLF":     func(c *Config) { c.Headers = []string{"X-A: b\r\nX-Inj: c"} },
		"header value with LF":       func(c *Config) { c.Headers = []string{"X-A: b\nc"} },
		"stream with an output file": func(c *Config) { c.Stream = true },
		"missing --cacerts":          func(c *Config) { c.CACerts = []string{filepath.Join(dir, "none.pem")} },
		"negative --expiretime":      func(c *Config) { c.ExpireTime = -5 * time.Second },
		"negative --alivetime":       func(c *Config) { c.AliveTime = -time.Second },
	} {
		c := newTestConfig(t)
		c.Output = filepath.Join(dir, "out")
		mut(c)
		if err := c.Complete(); err == nil {
			t.Errorf("%s: accepted (output %q)", name, c.Output)
		}
	}
	c := newTestConfig(t)
	c.Output, c.Stream = "-", true
	if err := c.Complete(); err != nil || c.Output != "" {
		t.Errorf("--stream -o -: %v, output %q", err, c.Output)
	}
}

// An output that is a symlink to a file is replaced where the link
// points, so the link survives: Complete resolves it.
func TestCompleteResolvesOutputSymlink(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "real")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(sub, "file")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("real/file", link); err != nil {
		t.Fatal(err)
	}
	c := newTestConfig(t)
	c.Output = link
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(target)
	if c.Output != want {
		t.Errorf("output %q, want the link's target %q", c.Output, want)
	}
}
