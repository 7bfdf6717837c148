// Package config holds dfget's configuration: the flags of the download and
// server commands, the YAML properties file (/etc/dragonfly/dfget.yml), the
// supernode node list, and the runtime values derived from them (sign, CID,
// task file name, paths under the work home).
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/fsname"
	"github.com/damselfly-p2p/damselfly/pkg/logfile"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/rate"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// Patterns of --pattern.
const (
	PatternP2P    = "p2p"
	PatternCDN    = "cdn"
	PatternSource = "source"
)

// Orders of --node-order; "" is NodeOrderHome.
const (
	NodeOrderHome   = "home"
	NodeOrderRandom = "random"
)

// Defaults that differ from "zero".
const (
	DefaultMinRate      = 64 * rate.KB
	DefaultClientQueue  = 6
	DefaultExpireTime   = 3 * time.Minute
	DefaultAliveTime    = 5 * time.Minute
	DefaultWindowSize   = 8
	DefaultPropertyFile = "/etc/dragonfly/dfget.yml"
	// LegacyPropertyFile is v1's INI file, read when DefaultPropertyFile
	// does not exist.
	LegacyPropertyFile = "/etc/dragonfly.conf"
	// DefaultUnknownLengthTimeout bounds a download whose length is unknown.
	DefaultUnknownLengthTimeout = 5 * time.Minute
)

// Dragonfly 1.x result codes of a failed download, printed as
// "download FAIL(code)".
const (
	CodePrepare       = 1101
	CodeDownloadError = 1104
)

// Exit statuses of dfget: a result code modulo 256, as a process exit
// status cannot carry more (Dragonfly 1.x exits the same way).
const (
	ExitUsage         = 1
	ExitPrepare       = CodePrepare % 256       // 77
	ExitDownloadError = CodeDownloadError % 256 // 80
)

// Back-source reasons, printed as reason:N and reported as backsourceReason.
const (
	ReasonNone          = 0
	ReasonRegisterFail  = 1
	ReasonMd5NotMatch   = 2
	ReasonDownloadError = 3
	ReasonNoSpace       = 4
	ReasonWriteError    = 6
	ReasonNodeEmpty     = 8
	ReasonSourceError   = 10
	ReasonUserSpecified = 100
	ReasonNotBSAddition = 1000
)

// Config is everything one dfget download needs: flags, properties and the
// values derived from them by Complete.
type Config struct {
	URL        string
	Output     string
	LocalLimit rate.Rate
	MinRate    rate.Rate
	TotalLimit rate.Rate
	Timeout    time.Duration
	Md5        string
	Identifier string
	// Digest is the expected digest of the whole file, "sha256:<hex>".
	Digest     string
	CallSystem string
	CACerts    []string
	Insecure   bool
	Pattern    string
	Filter     string
	Headers    []string
	Nodes      nodes.List
	// NodeOrder is how Nodes are ordered for a task: NodeOrderHome (by
	// rendezvous hashing of the task ID) or NodeOrderRandom (Dragonfly
	// 1.x's weighted random order, kept for comparison).
	NodeOrder   string
	NotBS       bool
	Dfdaemon    bool
	ClientQueue int
	ShowBar     bool
	Console     bool
	Verbose     bool
	Home        string
	IP          string
	Port        int
	ExpireTime  time.Duration
	AliveTime   time.Duration
	Stream      bool
	WindowSize  int
	// NodeToken is sent to supernodes as "Authorization: Bearer <token>"
	// (--node-token or properties nodeToken).
	NodeToken string
	// NodeCACerts, when set, make dfget reach supernodes over HTTPS,
	// trusting these PEM CA files (--node-cacerts or nodeCACerts).
	NodeCACerts []string
	// PropertyFile is the YAML properties file; empty means the default.
	PropertyFile string
	// LogConfig rotates the log files (properties logConfig).
	LogConfig logfile.Rotation
	// ServerExecutable is the binary run as "server" to start the peer
	// server; empty means this executable. Not a flag: tests set it.
	ServerExecutable string

	// Derived by Complete.
	Sign         string
	TaskURL      string
	TaskFileName string
	StartTime    time.Time
}

// Properties is the YAML properties file.
type Properties struct {
	Nodes           []string  `yaml:"nodes"`
	LocalLimit      rate.Rate `yaml:"localLimit"`
	MinRate         rate.Rate `yaml:"minRate"`
	TotalLimit      rate.Rate `yaml:"totalLimit"`
	ClientQueueSize int       `yaml:"clientQueueSize"`
	WorkHome        string    `yaml:"workHome"`
	NodeToken       string    `yaml:"nodeToken"`
	NodeCACerts     []string  `yaml:"nodeCACerts"`
	// LogConfig rotates dfclient.log and dfserver.log.
	LogConfig logfile.Rotation `yaml:"logConfig"`
}

// ReadProperties loads path or, when path is empty, the first of
// DefaultPropertyFile and LegacyPropertyFile that exists (v1 order). A
// missing file is not an error (zero Properties); a malformed one is.
func ReadProperties(path string) (Properties, error) {
	if path != "" {
		p, _, err := loadProperties(path)
		return p, err
	}
	for _, f := range []string{DefaultPropertyFile, LegacyPropertyFile} {
		if p, found, err := loadProperties(f); found || err != nil {
			return p, err
		}
	}
	return Properties{}, nil
}

// loadProperties reads YAML, or v1's legacy INI for a .conf or .ini file
// (LegacyPropertyFile); found is false for a missing file.
func loadProperties(path string) (p Properties, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, true, fmt.Errorf("read properties %s: %w", path, err)
	}
	if ext := filepath.Ext(path); ext == ".conf" || ext == ".ini" {
		p, err = parseLegacyINI(b)
	} else {
		err = yaml.Unmarshal(b, &p)
	}
	if err != nil {
		return p, true, fmt.Errorf("parse properties %s: %w", path, err)
	}
	return p, true, nil
}

// parseLegacyINI reads v1's /etc/dragonfly.conf, whose only setting is
// "[node]" "address = host[:port][=weight],...". Other sections and keys are
// ignored, as v1 did.
func parseLegacyINI(b []byte) (Properties, error) {
	var p Properties
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return p, fmt.Errorf("line %d: unterminated section %q", i+1, line)
			}
			section = strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return p, fmt.Errorf("line %d: want key = value, got %q", i+1, line)
			}
			if section == "node" && strings.EqualFold(strings.TrimSpace(k), "address") {
				p.Nodes = nil
				for _, n := range strings.Split(v, ",") {
					if n = strings.TrimSpace(n); n != "" {
						p.Nodes = append(p.Nodes, n)
					}
				}
			}
		}
	}
	return p, nil
}

// New returns a Config with the flag defaults.
func New() *Config {
	return &Config{
		Pattern:    PatternP2P,
		ExpireTime: DefaultExpireTime,
		AliveTime:  DefaultAliveTime,
		WindowSize: DefaultWindowSize,
	}
}

// Complete merges the properties file (CLI values win when non-zero),
// applies defaults, validates every value and derives the runtime values.
// The error names the offending input.
func (c *Config) Complete() error {
	p, err := ReadProperties(c.PropertyFile)
	if err != nil {
		return err
	}
	return c.CompleteWith(p)
}

// CompleteWith is Complete with the properties already read (PropertyFile
// is not read): a long-running caller such as dfdaemon reads the file
// once, at startup, rather than for every download.
func (c *Config) CompleteWith(p Properties) error {
	if err := c.merge(p); err != nil {
		return err
	}
	if err := c.completeHome(); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if err := c.completeTarget(); err != nil {
		return err
	}
	c.derive()
	return nil
}

// merge fills the values the command line left zero from the properties
// file p, then from the defaults.
func (c *Config) merge(p Properties) error {
	c.LogConfig = p.LogConfig
	if len(c.Nodes) == 0 && len(p.Nodes) > 0 {
		if err := c.Nodes.Set(strings.Join(p.Nodes, ",")); err != nil {
			return fmt.Errorf("properties nodes: %w", err)
		}
	}
	if len(c.Nodes) == 0 {
		c.Nodes = nodes.List{{Host: "127.0.0.1", Port: nodes.DefaultPort, Weight: 1}}
	}
	c.LocalLimit = cmp.Or(c.LocalLimit, p.LocalLimit)
	c.MinRate = cmp.Or(c.MinRate, p.MinRate, DefaultMinRate)
	c.TotalLimit = cmp.Or(c.TotalLimit, p.TotalLimit)
	if c.ClientQueue = cmp.Or(c.ClientQueue, p.ClientQueueSize); c.ClientQueue <= 0 {
		c.ClientQueue = DefaultClientQueue
	}
	c.Home = cmp.Or(c.Home, p.WorkHome)
	c.NodeToken = cmp.Or(c.NodeToken, p.NodeToken)
	if len(c.NodeCACerts) == 0 {
		c.NodeCACerts = p.NodeCACerts
	}
	for _, f := range c.NodeCACerts {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("invalid --node-cacerts: %w", err)
		}
	}
	// Checked here like --node-cacerts, not when the source is first
	// contacted (after the peer server and the registration).
	for _, f := range c.CACerts {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("invalid --cacerts: %w", err)
		}
	}
	return nil
}

// DefaultHome is the work home of a dfget (and its peer server) given
// neither --home nor properties workHome.
func DefaultHome() (string, error) {
	h, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(h, ".small-dragonfly"), nil
}

// completeHome makes the work home absolute, ~/.small-dragonfly when
// neither --home nor the properties gave one.
func (c *Config) completeHome() error {
	var err error
	if c.Home == "" {
		if c.Home, err = DefaultHome(); err != nil {
			return fmt.Errorf("no --home and no home directory: %w", err)
		}
	}
	if c.Home, err = filepath.Abs(c.Home); err != nil {
		return fmt.Errorf("invalid --home: %w", err)
	}
	return nil
}

// validate checks the values that need no completing: pattern, URL,
// headers (and their Range), md5, digest, timeout, port and IP.
func (c *Config) validate() error {
	switch c.Pattern {
	case PatternP2P, PatternCDN, PatternSource:
	default:
		return fmt.Errorf("invalid --pattern %q: want p2p, cdn or source", c.Pattern)
	}
	if _, err := urlutil.Validate(c.URL); err != nil {
		return err
	}
	if err := validateHeaders(c.Headers); err != nil {
		return err
	}
	if c.Md5 != "" && !isMd5(c.Md5) {
		return fmt.Errorf("invalid --md5 %q: want 32 hex digits", c.Md5)
	}
	if c.NodeOrder != "" && c.NodeOrder != NodeOrderHome && c.NodeOrder != NodeOrderRandom {
		return fmt.Errorf("invalid --node-order %q: want %s or %s", c.NodeOrder, NodeOrderHome, NodeOrderRandom)
	}
	if _, err := c.ExpectedDigest(); err != nil {
		return err
	}
	if c.Timeout < 0 {
		return fmt.Errorf("invalid --timeout %v: negative", c.Timeout)
	}
	if err := ValidateServerTimes(c.ExpireTime, c.AliveTime); err != nil {
		return err
	}
	if c.Port != 0 && (c.Port < 15000 || c.Port > 65000) {
		return fmt.Errorf("invalid --port %d: want 15000..65000", c.Port)
	}
	if c.IP != "" && !isIPv4(c.IP) {
		return fmt.Errorf("invalid --ip %q: want a dotted IPv4 address", c.IP)
	}
	return nil
}

// ValidateServerTimes checks the peer server's --expiretime and
// --alivetime: a negative duration is refused rather than read as "at
// once" or "never".
func ValidateServerTimes(expire, alive time.Duration) error {
	if expire < 0 {
		return fmt.Errorf("invalid --expiretime %v: negative", expire)
	}
	if alive < 0 {
		return fmt.Errorf("invalid --alivetime %v: negative (0 keeps the server alive)", alive)
	}
	return nil
}

// ExpectedDigest is the whole file's expected digest (zero without
// --digest). Only "sha256:<64 hex digits>" is accepted: a malformed digest
// or another algorithm is an error, never "no check".
func (c *Config) ExpectedDigest() (digest.Digest, error) {
	if c.Digest == "" {
		return digest.Digest{}, nil
	}
	d, err := digest.Parse(c.Digest)
	if err == nil && d.Algorithm() != digest.SHA256 {
		err = fmt.Errorf("%s is not checked for a whole file", d.Algorithm())
	}
	if err != nil {
		return digest.Digest{}, fmt.Errorf("invalid --digest: want sha256:<64 hex digits>: %w", err)
	}
	return d, nil
}

// completeTarget settles where the file goes: stdout for --stream (or
// -o -), else the output file.
func (c *Config) completeTarget() error {
	if c.Output == "-" {
		c.Stream, c.Output = true, ""
	}
	if c.Stream && c.Output != "" {
		return fmt.Errorf("invalid -o %q with --stream: a stream goes to stdout (give -o - or no -o)", c.Output)
	}
	if !c.Stream {
		return c.completeOutput()
	}
	if c.WindowSize < 1 || c.WindowSize > 1024 {
		return fmt.Errorf("invalid --window-size %d: want 1..1024", c.WindowSize)
	}
	return nil
}

// derive sets the runtime values of this run: its start, its sign (which
// makes the CID and the task file name unique on the host) and the task
// URL the supernode keys the task by.
func (c *Config) derive() {
	c.StartTime = time.Now()
	c.Sign = fmt.Sprintf("%d-%.3f", os.Getpid(), float64(c.StartTime.UnixNano())/1e9)
	c.TaskURL = urlutil.FilterQuery(c.URL, c.Filter)
	base := "stream"
	if c.Output != "" {
		// Cut, so that the name the peer server checks (at most 255
		// bytes) and the file it stores stay valid for any output name.
		base = fsname.Base(c.Output)
	}
	c.TaskFileName = base + "-" + c.Sign
}

// completeOutput makes the output path absolute (the last URL path
// segment, in the working directory, without -o) and checks that it can
// be written.
func (c *Config) completeOutput() error {
	if c.Output == "" {
		u := strings.TrimRight(c.URL, "/")
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			u = u[:i]
		}
		c.Output = u[strings.LastIndexByte(u, '/')+1:]
		if c.Output == "" || strings.Contains(c.Output, ":") {
			return fmt.Errorf("cannot derive an output name from %q: give -o", c.URL)
		}
	}
	out, err := filepath.Abs(c.Output)
	if err != nil {
		return fmt.Errorf("invalid output %q: %w", c.Output, err)
	}
	if out, err = existingOutput(out); err != nil {
		return err
	}
	c.Output = out
	// The nearest existing parent must be a writable directory.
	dir := filepath.Dir(out)
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("invalid output %q: %s is not a directory", out, dir)
			}
			if unix.Access(dir, unix.W_OK|unix.X_OK) != nil {
				return fmt.Errorf("invalid output %q: directory %s is not writable", out, dir)
			}
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("invalid output %q: no existing parent directory", out)
		}
		dir = parent
	}
}

// existingOutput checks what already is at the output path out, which the
// download will replace by renaming a file over it: only a regular file
// may be. A device, FIFO or socket is refused (as root, "-o /dev/null"
// would otherwise replace /dev/null with the download). A symlink is
// followed, and the path it resolves to returned: the download then
// replaces the file the link names, beside it (so the rename stays
// atomic), and the link stays. A link that does not resolve is refused.
func existingOutput(out string) (string, error) {
	st, err := os.Lstat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return "", fmt.Errorf("invalid output %q: %w", out, err)
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(out)
		if err != nil {
			return "", fmt.Errorf("invalid output %q: a symlink that does not resolve to a file: %w", out, err)
		}
		if st, err = os.Stat(target); err != nil {
			return "", fmt.Errorf("invalid output %q: symlink target %s: %w", out, target, err)
		}
		out = target
	}
	switch {
	case st.IsDir():
		return "", fmt.Errorf("invalid output %q: is a directory", out)
	case !st.Mode().IsRegular():
		return "", fmt.Errorf("invalid output %q: not a regular file (%s): dfget replaces the output with the downloaded file", out, fileKind(st.Mode()))
	case unix.Access(out, unix.W_OK) != nil:
		return "", fmt.Errorf("invalid output %q: not writable", out)
	}
	return out, nil
}

// fileKind names a mode's file type for an error.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "type " + m.Type().String()
}

// Derived paths under the work home.
func (c *Config) MetaDir() string  { return filepath.Join(c.Home, "meta") }
func (c *Config) MetaPath() string { return filepath.Join(c.Home, "meta", "host.meta") }
func (c *Config) DataDir() string  { return filepath.Join(c.Home, "data") }
func (c *Config) LogDir() string   { return filepath.Join(c.Home, "logs") }

// DownloadTimeout is --timeout, or fileLength/minRate + 10 s, or 5 min when
// the length is unknown.
func (c *Config) DownloadTimeout(fileLength int64) time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	if fileLength < 0 || c.MinRate <= 0 {
		return DefaultUnknownLengthTimeout
	}
	return time.Duration(float64(fileLength)/float64(c.MinRate)*float64(time.Second)) + 10*time.Second
}

// validateHeaders checks the --header lines (a token name, a value
// without control characters: an invalid one would fail only when a
// request is sent, after registering, or reach the origin as several
// fields), and the Range among them.
func validateHeaders(lines []string) error {
	for _, l := range lines {
		if err := urlutil.CheckHeaderLine(l); err != nil {
			return fmt.Errorf("invalid --header: %w", err)
		}
	}
	hdr, err := urlutil.ParseHeaders(lines)
	if err != nil {
		return err
	}
	if rg, ok := hdr["Range"]; ok {
		return validateRange(rg)
	}
	return nil
}

// validateRange accepts a Range header dfget can honour: one byte range,
// "bytes=a-b", "bytes=a-" or "bytes=-n" (not "bytes=-0", which names no
// byte: the origin answers 416). Several ranges (also two Range
// headers, which ParseHeaders joins with a comma) would make the origin
// answer a multipart/byteranges body, which is not the file: dfget would
// write the MIME parts as the output.
func validateRange(rg string) error {
	_, err := urlutil.ParseByteRange(rg)
	switch {
	case errors.Is(err, urlutil.ErrSeveralRanges):
		return fmt.Errorf("invalid --header Range %q: several ranges are not supported (the answer would be a multipart body, not the file); give one range", rg)
	case err != nil:
		return fmt.Errorf("invalid --header Range %q: want bytes=a-b, bytes=a- or bytes=-n", rg)
	}
	return nil
}

func isMd5(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

func isIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 255 || p == "" || (len(p) > 1 && p[0] == '0') {
			return false
		}
	}
	return true
}
