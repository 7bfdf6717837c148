package swarm

import (
	"os"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The dfdaemon metric names the operator docs tell people to alert on, and
// dfdaemon's reference lists, are ones dfdaemon really exports.
func TestDocumentedMetricsExist(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// build_info is the server's (dfdaemon/server), whose test scrapes it.
	have := map[string]bool{"dragonfly_dfdaemon_build_info": true}
	for _, f := range families {
		have[f.GetName()] = true
	}
	named := regexp.MustCompile("`(dragonfly_dfdaemon_[a-z_]+)`")
	for _, doc := range []string{"../../docs/operations.md", "../../docs/dfdaemon.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		found := named.FindAllStringSubmatch(string(b), -1)
		if len(found) < 3 {
			t.Errorf("%s: only %d dfdaemon metric names found; the parser is off", doc, len(found))
		}
		for _, m := range found {
			if !have[m[1]] {
				t.Errorf("%s names metric %q, which dfdaemon does not export", doc, m[1])
			}
		}
	}
}
