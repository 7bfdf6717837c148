// Package version carries the build's version information, injected at link
// time with -ldflags "-X github.com/damselfly-p2p/damselfly/pkg/version.Version=...".
package version

import (
	"runtime"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// Set by -ldflags -X at build time; these are the only link-time variables.
var (
	Version   = "dev"
	Revision  = ""
	BuildDate = ""
)

// Info returns the build information as served by GET /version.
func Info() types.VersionInfo {
	return types.VersionInfo{
		Version:   Version,
		Revision:  Revision,
		BuildDate: BuildDate,
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
	}
}
