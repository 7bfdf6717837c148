// Package clidoc renders a cobra command tree as Markdown reference pages
// (one file per command) and provides the `gen-doc` subcommand that writes
// them, so the committed docs/cli pages come from the flags themselves.
package clidoc

import (
	"fmt"
	"os"
	"path/filepath"
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
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return nil
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "_") + ".md"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(Markdown(c)), 0o644); err != nil {
			return fmt.Errorf("gen-doc: %w", err)
		}
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root)
}

// Markdown is one command's page: synopsis, subcommands, its own flags and
// the flags it inherits.
func Markdown(c *cobra.Command) string {
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
	flags(&b, "Options", c.NonInheritedFlags())
	flags(&b, "Options inherited from parent commands", c.InheritedFlags())
	return b.String()
}

func flags(b *strings.Builder, title string, fs *pflag.FlagSet) {
	if !fs.HasAvailableFlags() {
		return
	}
	fmt.Fprintf(b, "### %s\n\n```\n", title)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		short := "    "
		if f.Shorthand != "" {
			short = "-" + f.Shorthand + ", "
		}
		fmt.Fprintf(b, "  %s--%s %s\t%s (default %q)\n", short, f.Name, f.Value.Type(), f.Usage, f.DefValue)
	})
	b.WriteString("```\n\n")
}
