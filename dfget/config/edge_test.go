package config

import (
	"path/filepath"
	"strings"
	"testing"
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
