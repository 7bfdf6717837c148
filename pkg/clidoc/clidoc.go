// Package clidoc renders a cobra command tree as Markdown reference pages
// (one file per command) and provides the `gen-doc` subcommand that writes
// them, so the committed docs/cli pages come from the flags themselves.
package clidoc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Command returns a `gen-doc` subcommand writing the pages of root's tree.
func Command(root *cobra.Command) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "gen-doc",
		Short: "Write Markdown documentation of the commands",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return Write(root, dir) },
	}
	cmd.Flags().StringVarP(&dir, "path", "p", "/tmp", "directory to write the Markdown files to")
	return cmd
}

// Write writes <command path with _>.md for root and every visible
// descendant into dir.
func Write(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gen-doc: %w", err)
	}
	for name, page := range Pages(root) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644); err != nil {
			return fmt.Errorf("gen-doc: %w", err)
		}
	}
	return nil
}

// Pages maps each page's file name (<command path with _>.md) to its
// Markdown, for root and every visible descendant.
func Pages(root *cobra.Command) map[string]string {
	pages := map[string]string{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		pages[strings.ReplaceAll(c.CommandPath(), " ", "_")+".md"] = Markdown(c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return pages
}

// Stale lists how the pages of root's tree in dir differ from what Write
// would write there now: pages that differ, are missing, or are in dir
// under root's name but belong to no command any more. A test per binary
// runs it against docs/cli, so a flag changed without regenerating the
// pages fails the build instead of leaving the reference wrong.
func Stale(root *cobra.Command, dir string) ([]string, error) {
	pages := Pages(root)
	var stale []string
	for name, page := range pages {
		b, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			stale = append(stale, name+": missing")
		case err != nil:
			return nil, fmt.Errorf("read page: %w", err)
		case string(b) != page:
			stale = append(stale, name+": differs")
		}
	}
	have, err := filepath.Glob(filepath.Join(dir, root.Name()+"*.md"))
	if err != nil {
		return nil, fmt.Errorf("list pages: %w", err)
	}
	for _, p := range have {
		name := filepath.Base(p)
		own := name == root.Name()+".md" || strings.HasPrefix(name, root.Name()+"_")
		if _, ok := pages[name]; own && !ok {
			stale = append(stale, name+": no such command")
		}
	}
	slices.Sort(stale)
	return stale, nil
}

// Markdown is one command's page: synopsis, subcommands, its own flags and
// the flags it inherits. The page depends only on the command tree, not on
// which command ran: cobra adds --help to a command and merges inherited
// flags into its set only as it executes it, so the help flag is left out
// and the flags are merged before the synopsis ("[flags]") is read.
func Markdown(c *cobra.Command) string {
	own, inherited := c.NonInheritedFlags(), c.InheritedFlags()
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n%s\n\n", c.CommandPath(), c.Short)
	if c.Long != "" {
		fmt.Fprintf(&b, "%s\n\n", c.Long)
	}
	fmt.Fprintf(&b, "```\n%s\n```\n\n", c.UseLine())
	var subs []string
	for _, s := range c.Commands() {
		if !s.Hidden && s.Name() != "help" && s.Name() != "completion" {
			subs = append(subs, fmt.Sprintf("- `%s`: %s", s.CommandPath(), s.Short))
		}
	}
	if len(subs) > 0 {
		fmt.Fprintf(&b, "### Subcommands\n\n%s\n\n", strings.Join(subs, "\n"))
	}
	flags(&b, "Options", own)
	flags(&b, "Options inherited from parent commands", inherited)
	return b.String()
}

func flags(b *strings.Builder, title string, fs *pflag.FlagSet) {
	var lines []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		short := "    "
		if f.Shorthand != "" {
			short = "-" + f.Shorthand + ", "
		}
		lines = append(lines, fmt.Sprintf("  %s--%s %s\t%s (default %q)\n", short, f.Name, f.Value.Type(), f.Usage, f.DefValue))
	})
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "### %s\n\n```\n%s```\n\n", title, strings.Join(lines, ""))
}
