package cluster

import (
	"context"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// NewForTest creates a cluster that is closed when the test ends, with
// every log printed first if the test failed. With Mode ModeNetns the test
// is skipped, with the reason, where namespaces are unavailable (it fails
// in CI).
func NewForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Mode == ModeNetns {
		if reason := netnsUnavailable(context.Background()); reason != "" {
			imagetest.Unavailable(t, "network namespaces unavailable: %s", reason)
		}
	}
	c, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if c.Reason() != "" {
		t.Logf("cluster in loopback mode: %s", c.Reason())
	}
	t.Cleanup(func() {
		if t.Failed() {
			var b strings.Builder
			c.DumpLogs(&b, 16<<10)
			t.Logf("cluster logs (%s):\n%s", c.Dir(), b.String())
		}
		if err := c.Close(); err != nil {
			t.Errorf("cluster teardown: %v", err)
		}
	})
	return c
}
