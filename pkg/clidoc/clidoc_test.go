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

func TestStale(t *testing.T) {
	newRoot := func(port int) *cobra.Command {
		root := &cobra.Command{Use: "tool", Short: "does things", Run: func(*cobra.Command, []string) {}}
		sub := &cobra.Command{Use: "serve", Short: "serve it", Run: func(*cobra.Command, []string) {}}
		sub.Flags().Int("port", port, "port")
		root.AddCommand(sub)
		return root
	}
	dir := t.TempDir()
	if err := Write(newRoot(8002), dir); err != nil {
		t.Fatal(err)
	}
	// Another tool's page in the same directory is none of tool's business.
	if err := os.WriteFile(filepath.Join(dir, "toolbox.md"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if stale, err := Stale(newRoot(8002), dir); err != nil || len(stale) != 0 {
		t.Fatalf("fresh pages: %v, %v", stale, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tool_gone.md"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "tool.md")); err != nil {
		t.Fatal(err)
	}
	stale, err := Stale(newRoot(9000), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "tool.md: missing, tool_gone.md: no such command, tool_serve.md: differs"
	if got := strings.Join(stale, ", "); got != want {
		t.Fatalf("stale %q, want %q", got, want)
	}
}

// The pages must not depend on whether a command ran: `x gen-doc`, run by
// hand, and a test building the tree in-process must agree, or the check
// against docs/cli fails on pages that are current.
func TestPagesIndependentOfExecution(t *testing.T) {
	root := &cobra.Command{Use: "tool", Short: "does things", Run: func(*cobra.Command, []string) {}}
	root.PersistentFlags().String("config", "/etc/x.yml", "config file")
	sub := &cobra.Command{Use: "serve", Short: "serve it", Run: func(*cobra.Command, []string) {}}
	sub.Flags().Int("port", 8002, "port")
	root.AddCommand(sub)
	before := Pages(root)
	root.SetArgs([]string{"serve"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	after := Pages(root)
	for name, page := range after {
		if before[name] != page {
			t.Errorf("%s before executing:\n%s\nafter:\n%s", name, before[name], page)
		}
	}
	if !strings.Contains(after["tool.md"], "tool [flags]") {
		t.Errorf("tool.md synopsis lacks [flags]:\n%s", after["tool.md"])
	}
}
