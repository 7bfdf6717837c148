package clidoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestWrite(t *testing.T) {
	root := &cobra.Command{Use: "tool", Short: "does things", Run: func(*cobra.Command, []string) {}}
	root.PersistentFlags().String("config", "/etc/x.yml", "config file")
	sub := &cobra.Command{Use: "serve", Short: "serve it", Run: func(*cobra.Command, []string) {}}
	sub.Flags().IntP("port", "p", 8002, "port")
	hidden := &cobra.Command{Use: "secret", Hidden: true, Run: func(*cobra.Command, []string) {}}
	root.AddCommand(sub, hidden, Command(root))
	dir := t.TempDir()
	if err := Write(root, dir); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	if strings.Join(names, " ") != "tool.md tool_gen-doc.md tool_serve.md" {
		t.Fatalf("pages %v", names)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "tool_serve.md"))
	for _, want := range []string{"## tool serve", "-p, --port int", `(default "8002")`, "Options inherited", "--config string"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("tool_serve.md lacks %q:\n%s", want, b)
		}
	}
	b, _ = os.ReadFile(filepath.Join(dir, "tool.md"))
	if !strings.Contains(string(b), "`tool serve`: serve it") || strings.Contains(string(b), "secret") {
		t.Errorf("tool.md subcommands:\n%s", b)
	}
}
