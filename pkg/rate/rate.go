// Package rate parses and formats the byte-rate strings of Dragonfly 1.x
// flags and config keys ("20MB", "64k", "1.5G", "1048576") and builds
// golang.org/x/time/rate limiters from them.
package rate

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	xrate "golang.org/x/time/rate"
)

// Rate is a number of bytes per second. Zero means "not set"; callers decide
// whether that is unlimited or a default.
type Rate int64

const (
	B  Rate = 1
	KB      = 1024 * B
	MB      = 1024 * KB
	GB      = 1024 * MB
)

// Parse reads a rate: a non-negative number followed by an optional unit
// B, K/KB, M/MB, G/GB (either case, the trailing B optional). A plain number
// is bytes.
func Parse(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("invalid rate %q: empty", s)
	}
	up := strings.ToUpper(t)
	mult := B
	switch {
	case strings.HasSuffix(up, "GB"), strings.HasSuffix(up, "G"):
		mult = GB
	case strings.HasSuffix(up, "MB"), strings.HasSuffix(up, "M"):
		mult = MB
	case strings.HasSuffix(up, "KB"), strings.HasSuffix(up, "K"):
		mult = KB
	}
	num := strings.TrimRight(up, "GMKB")
	if num == "" {
		return 0, fmt.Errorf("invalid rate %q: no number", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("invalid rate %q: want a number with an optional unit B, KB, MB or GB", s)
	}
	total := v * float64(mult)
	if total > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid rate %q: too large", s)
	}
	return Rate(total), nil
}

// String formats a rate in the largest unit that keeps it whole.
func (r Rate) String() string {
	switch {
	case r == 0:
		return "0B"
	case r%GB == 0:
		return strconv.FormatInt(int64(r/GB), 10) + "GB"
	case r%MB == 0:
		return strconv.FormatInt(int64(r/MB), 10) + "MB"
	case r%KB == 0:
		return strconv.FormatInt(int64(r/KB), 10) + "KB"
	}
	return strconv.FormatInt(int64(r), 10) + "B"
}

// Set implements pflag.Value so a Rate can be a command-line flag.
func (r *Rate) Set(s string) error {
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Type implements pflag.Value.
func (r *Rate) Type() string { return "rate" }

// UnmarshalText lets a Rate be read from YAML or JSON as "20MB".
func (r *Rate) UnmarshalText(b []byte) error { return r.Set(string(b)) }

// MarshalText writes a Rate as its String form.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Limiter returns a token-bucket limiter for r, or nil when r is zero or
// negative (unlimited). The burst allows one read of up to burst bytes, so
// callers should wait in chunks no larger than it.
func (r Rate) Limiter(burst int) *xrate.Limiter {
	if r <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = 64 * 1024
	}
	return xrate.NewLimiter(xrate.Limit(r), burst)
}
