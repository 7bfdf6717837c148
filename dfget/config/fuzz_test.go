package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadProperties feeds arbitrary YAML as the properties file to
// ReadProperties and Complete: an error or a completed configuration,
// never a panic.
func FuzzLoadProperties(f *testing.F) {
	f.Add("nodes: [\"10.0.0.1:8002=2\", \"10.0.0.2\"]\nlocalLimit: 20MB\nnodeToken: t\n")
	f.Add("totalLimit: -1\nclientQueueSize: 0\n")
	f.Add("nodes: x\n")
	f.Add("nodeCACerts: [/nonexistent]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "dfget.yml")
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadProperties(path); err != nil {
			return
		}
		c := New()
		c.URL, c.Output, c.Home, c.PropertyFile = "http://h/f", filepath.Join(dir, "out"), dir, path
		if err := c.Complete(); err != nil {
			return
		}
		if len(c.Nodes) == 0 || c.ClientQueue <= 0 || c.MinRate <= 0 {
			t.Fatalf("Complete accepted %+v", c)
		}
	})
}
