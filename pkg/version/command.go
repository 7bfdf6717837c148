package version

import (
	"fmt"

	"github.com/spf13/cobra"
)

// Command is the `version` subcommand of program: the build's version,
// revision, date and toolchain, as every Damselfly program prints them.
func Command(program string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := Info()
			fmt.Fprintf(cmd.OutOrStdout(), "%s version %s\n  revision: %s\n  build date: %s\n  go: %s %s/%s\n",
				program, v.Version, v.Revision, v.BuildDate, v.GoVersion, v.OS, v.Arch)
		},
	}
}
