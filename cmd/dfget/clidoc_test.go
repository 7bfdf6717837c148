package main

import (
	"testing"

	"github.com/damselfly-p2p/damselfly/pkg/clidoc"
)

// TestCLIDocsCurrent fails when docs/cli no longer matches the flags:
// regenerate with `dfget gen-doc -p docs/cli` (docs/operations.md).
func TestCLIDocsCurrent(t *testing.T) {
	stale, err := clidoc.Stale(newRoot(), "../../docs/cli")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stale {
		t.Errorf("docs/cli/%s: run go run ./cmd/dfget gen-doc -p docs/cli", s)
	}
}
