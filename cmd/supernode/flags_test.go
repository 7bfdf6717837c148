package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --cdn-fill-limit sets the cap over the YAML key, and one under 1 is
// refused with the flag's name.
func TestCDNFillLimitFlag(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sn.yml")
	if err := os.WriteFile(cfg, []byte("base:\n  cdnFillLimit: 5\n  advertiseIP: 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append([]string{"config", "default", "--config", cfg}, args...))
		err := root.Execute()
		return out.String(), err
	}
	if out, err := run(); err != nil || !strings.Contains(out, "cdnFillLimit: 5") {
		t.Fatalf("YAML key: %v\n%s", err, out)
	}
	if out, err := run("--cdn-fill-limit", "3"); err != nil || !strings.Contains(out, "cdnFillLimit: 3") {
		t.Fatalf("flag over the YAML key: %v\n%s", err, out)
	}
	if _, err := run("--cdn-fill-limit", "0"); err == nil || !strings.Contains(err.Error(), "cdn-fill-limit") {
		t.Fatalf("limit 0 accepted: %v", err)
	}
}
