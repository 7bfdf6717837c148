package metrics

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// names returns the fully qualified names of every collector in m.
func names(m *Metrics) map[string]bool {
	out := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if mm := fq.FindStringSubmatch(d.String()); mm != nil {
				out[mm[1]] = true
			}
		}
	}
	return out
}

// The metric names the operator docs tell people to alert on, and the
// supernode reference lists, are ones the supernode really exports.
func TestDocumentedMetricsExist(t *testing.T) {
	have := names(New())
	if !have["dragonfly_supernode_pieces_failed_total"] || !have["dragonfly_supernode_source_failures_total"] {
		t.Fatalf("collector names not found: %v", have)
	}
	metric := regexp.MustCompile("`([a-z_]+)`")
	check := func(doc, section, end string, resolve func(string) []string) {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i := strings.Index(text, section)
		if i < 0 {
			t.Fatalf("%s: no section %q", doc, section)
		}
		text = text[i:]
		if j := strings.Index(text[len(section):], end); j >= 0 {
			text = text[:len(section)+j]
		}
		n := 0
		for _, m := range metric.FindAllStringSubmatch(text, -1) {
			name := m[1]
			if !strings.HasSuffix(name, "_total") && !strings.HasSuffix(name, "_seconds") && !strings.HasSuffix(name, "_milliseconds") &&
				name != "peers" && name != "tasks" && name != "dfgettasks" {
				continue // a label or a word
			}
			n++
			found := false
			for _, cand := range resolve(name) {
				found = found || have[cand]
			}
			if !found {
				t.Errorf("%s names metric %q, which the supernode does not export", doc, name)
			}
		}
		if n < 8 {
			t.Errorf("%s: only %d metric names found in %q; the parser is off", doc, n, section)
		}
	}
	// The dfdaemon's own table follows, checked by dfdaemon/swarm's test.
	check("../../docs/operations.md", "## What to alert on", "\n### dfdaemon", func(n string) []string {
		return []string{n, "dragonfly_supernode_" + n}
	})
	check("../../docs/supernode.md", "## Metrics", "\n## ", func(n string) []string {
		return []string{"dragonfly_" + n}
	})
}
