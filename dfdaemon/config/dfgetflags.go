package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/pkg/nodes"
)

// applyDfgetFlags reads v1's dfget_flags: the dfget command line a v1
// dfdaemon appended to every dfget it started, which is where most v1
// setups name their supernodes. Downloads run in this process now, so the
// flags that mean something to it are taken, each only where dfdaemon's
// own flag or key left the value unset (v1 put its own --node after the
// list, so it won): --node, --ip (localIP), --port (the peer server's) and
// --verbose. The rest are returned, for a warning that names them.
func (c *Config) applyDfgetFlags() (ignored []string, err error) {
	if len(c.DfgetFlags) == 0 {
		return nil, nil
	}
	f := pflag.NewFlagSet("dfget_flags", pflag.ContinueOnError)
	f.ParseErrorsWhitelist.UnknownFlags = true
	f.SetOutput(discard{})
	var list nodes.List
	var ip string
	var port int
	var verbose bool
	f.VarP(&list, "node", "n", "")
	f.StringVar(&ip, "ip", "", "")
	f.IntVar(&port, "port", 0, "")
	f.BoolVar(&verbose, "verbose", false, "")
	if err := f.Parse(c.DfgetFlags); err != nil {
		return nil, fmt.Errorf("dfget_flags: %w", err)
	}
	if len(c.Nodes) == 0 && len(list) > 0 {
		c.Nodes = list
	}
	if c.LocalIP == "" {
		c.LocalIP = ip
	}
	if c.PeerPort == 0 {
		c.PeerPort = port
	}
	c.Verbose = c.Verbose || verbose
	for _, a := range c.DfgetFlags {
		if !known(f, a) {
			ignored = append(ignored, a)
		}
	}
	return ignored, nil
}

// known reports whether arg is not a flag, or one of f's ("--name[=v]",
// or "-x" with x one of f's shorthands).
func known(f *pflag.FlagSet, arg string) bool {
	switch {
	case strings.HasPrefix(arg, "--"):
		name, _, _ := strings.Cut(arg[2:], "=")
		return f.Lookup(name) != nil
	case strings.HasPrefix(arg, "-") && len(arg) > 1:
		return f.ShorthandLookup(arg[1:2]) != nil
	}
	return true
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
