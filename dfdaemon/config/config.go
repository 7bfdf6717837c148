// Package config holds dfdaemon's configuration: Dragonfly 1.x's flags and
// its YAML file (/etc/dragonfly/dfdaemon.yml, accepted as v1 wrote it:
// keys this dfdaemon does not use are tolerated), their defaults, checks
// and the v1 exit codes of a bad configuration.
package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/damselfly-p2p/damselfly/dfdaemon/proxy"
	"github.com/damselfly-p2p/damselfly/dfdaemon/swarm"
	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/pkg/logfile"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/rate"
)

// Defaults of v1.
const (
	DefaultPort      = 65001
	DefaultRegistry  = "https://index.docker.io"
	DefaultConfig    = "/etc/dragonfly/dfdaemon.yml"
	DefaultRateLimit = 20 * rate.MB
)

// DefaultMaxStreams is MaxStreams's default (not in v1, whose dfget
// processes wrote files): dockerd and containerd fetch 3 layers of a pull
// at once, so 6 streams serve two pulls in full. A stream holds at most
// about (8 + 6 + 16) pieces, 120 MiB of 4 MiB pieces, so 6 bound the
// streams' piece memory to about 720 MiB.
const DefaultMaxStreams = 6

// Exit statuses of v1's dfdaemon for a configuration it cannot run with.
const (
	ExitConfig         = 10
	ExitHomeMissing    = 11
	ExitPathNotAbs     = 12
	ExitRateInvalid    = 13
	ExitPortInvalid    = 14
	ExitDfgetMissing   = 15
	ExitRepoCreateFail = 16
)

// Error is a configuration error with the exit status it ends dfdaemon with.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func errorf(code int, format string, a ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, a...)}
}

// RegistryMirror is v1's registry_mirror: the registry whose /v2/ API the
// dfdaemon mirrors, the CA files and TLS check for reaching it, and direct
// (never through the swarm).
type RegistryMirror struct {
	Remote   string   `yaml:"remote"`
	Certs    []string `yaml:"certs"`
	Insecure bool     `yaml:"insecure"`
	Direct   bool     `yaml:"direct"`
}

// Config is dfdaemon's configuration, with v1's YAML keys.
type Config struct {
	Port           int                 `yaml:"port"`
	PeerPort       int                 `yaml:"peerPort"`
	CertPem        string              `yaml:"certpem"`
	KeyPem         string              `yaml:"keypem"`
	Verbose        bool                `yaml:"verbose"`
	RateLimit      rate.Rate           `yaml:"ratelimit"`
	LocalRepo      string              `yaml:"localrepo"`
	WorkHome       string              `yaml:"workHome"`
	LocalIP        string              `yaml:"localIP"`
	SuperNodes     []string            `yaml:"supernodes"`
	DfgetFlags     []string            `yaml:"dfget_flags"`
	RegistryMirror RegistryMirror      `yaml:"registry_mirror"`
	Proxies        []proxy.Rule        `yaml:"proxies"`
	HijackHTTPS    *proxy.HijackConfig `yaml:"hijack_https"`
	LogConfig      logfile.Rotation    `yaml:"logConfig"`
	// ProxyDigestHosts (not in v1) are the origins, "host" or
	// "host:port", whose registry blobs fetched through the proxy share
	// one task per digest with the mirror's; see DigestHosts.
	ProxyDigestHosts []string `yaml:"proxy_digest_hosts"`
	// MaxStreams (not in v1) caps the blob streams in flight (0: no cap);
	// a blob GET past it waits for a slot (swarm.Options.MaxStreams).
	MaxStreams int `yaml:"maxStreams"`
	// MaxProcs is GOMAXPROCS (0: Go's own, the CPUs available to the
	// process; v1 defaulted to 4).
	MaxProcs int `yaml:"maxprocs"`
	// DfPath is the dfget binary started as the peer server should
	// another take over the work home's ("": the dfget next to dfdaemon).
	// v1 ran it for every download.
	DfPath string `yaml:"dfpath"`
	// HostIP and StreamMode are v1's, accepted so that a v1 command line
	// or file starts, and ignored: v1 never used hostIp, and every blob
	// streams here.
	HostIP     string `yaml:"hostIp"`
	StreamMode bool   `yaml:"streamMode"`

	// Nodes is the supernode list (--node, else supernodes); empty means
	// dfget's: its properties file, else 127.0.0.1:8002.
	Nodes nodes.List `yaml:"-"`
	// File is the YAML file read (--config).
	File string `yaml:"-"`
	// IgnoredDfgetFlags are the flags of dfget_flags that mean nothing to
	// an in-process download (see applyDfgetFlags).
	IgnoredDfgetFlags []string `yaml:"-"`
	// TLSCert is the listener's pair, loaded from CertPem and KeyPem (nil:
	// plain HTTP).
	TLSCert *tls.Certificate `yaml:"-"`
	// DfgetPropertyFile is dfget's properties file, read by Load ("":
	// dfget's own, /etc/dragonfly/dfget.yml else /etc/dragonfly.conf).
	// Not a flag: tests set it.
	DfgetPropertyFile string `yaml:"-"`
	// DfgetProperties are what Load read from it, for every download.
	DfgetProperties dfgetcfg.Properties `yaml:"-"`
}

// New returns a Config with v1's defaults.
func New() *Config {
	return &Config{Port: DefaultPort, RateLimit: DefaultRateLimit, RegistryMirror: RegistryMirror{Remote: DefaultRegistry},
		File: DefaultConfig, MaxStreams: DefaultMaxStreams}
}

// BindFlags registers v1's flags on f, writing into c.
func (c *Config) BindFlags(f *pflag.FlagSet) {
	f.StringVar(&c.File, "config", DefaultConfig, "YAML configuration file (v1 dfdaemon.yml)")
	f.IntVar(&c.Port, "port", DefaultPort, "port the registry mirror and proxy listen on")
	f.IntVar(&c.PeerPort, "peerPort", 0, "port of the peer server this dfdaemon runs (0: chosen automatically)")
	f.StringVar(&c.RegistryMirror.Remote, "registry", DefaultRegistry, "registry mirrored (YAML registry_mirror.remote)")
	f.Var(&c.Nodes, "node", "supernodes, host[:port][=weight] comma-separated (default: YAML supernodes, else dfget's)")
	f.Var(&c.RateLimit, "ratelimit", "rate limit of each blob download and of the host's uploads, e.g. 20MB; 0 = none")
	f.StringVar(&c.LocalRepo, "localrepo", "", "directory for temporary files (default <workHome>/dfdaemon/data)")
	f.StringVar(&c.WorkHome, "workHome", "", "work home shared with dfget (default ~/.small-dragonfly)")
	f.StringVar(&c.CertPem, "certpem", "", "TLS certificate (PEM) of the listener; with --keypem the listener is HTTPS")
	f.StringVar(&c.KeyPem, "keypem", "", "TLS key (PEM) of the listener")
	f.BoolVar(&c.Verbose, "verbose", false, "debug logging")
	f.IntVar(&c.MaxStreams, "max-streams", DefaultMaxStreams,
		"blob streams in flight (YAML maxStreams); a blob GET past it waits for a slot, and is forwarded to the registry after 1 minute; 0 = no cap")
	c.bindV1Flags(f)
}

// bindV1Flags registers v1's flags that an in-process, streaming
// dfdaemon needs little or not at all, so that a v1 command line starts.
func (c *Config) bindV1Flags(f *pflag.FlagSet) {
	f.IntVar(&c.MaxProcs, "maxprocs", 0, "GOMAXPROCS: most threads running Go code at once (0: the CPUs available)")
	f.StringVar(&c.DfPath, "dfpath", "",
		"dfget binary started as the peer server should another take over the work home's (default: dfget next to dfdaemon)")
	f.StringVar(&c.HostIP, "hostIp", "", "v1's, unused there too: ignored")
	f.BoolVar(&c.StreamMode, "streamMode", false, "v1's: ignored, every blob streams")
	_ = f.MarkHidden("hostIp")     // only fails for an unknown name
	_ = f.MarkHidden("streamMode") // only fails for an unknown name
}

// Load completes c after the flags were parsed into it: the YAML file
// fills what no flag set (a missing default file is no error), then
// defaults and checks apply.
func (c *Config) Load(f *pflag.FlagSet) error {
	changed := map[string]string{}
	f.Visit(func(fl *pflag.Flag) { changed[fl.Name] = fl.Value.String() })
	path, explicit := c.File, f.Changed("config")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	case err != nil:
		return errorf(ExitConfig, "read config %s: %w", path, err)
	default:
		// Flags win: the file is read onto the defaults, then the flags
		// given are applied again on top.
		props := c.DfgetPropertyFile
		*c = *New()
		c.DfgetPropertyFile = props
		if err := yaml.Unmarshal(b, c); err != nil {
			return errorf(ExitConfig, "parse config %s: %w", path, err)
		}
		c.File = path
		for name, v := range changed {
			if err := f.Set(name, v); err != nil {
				return errorf(ExitConfig, "flag --%s: %w", name, err)
			}
		}
	}
	return c.complete()
}

// complete applies the defaults that depend on other values and checks
// every value.
func (c *Config) complete() error {
	if len(c.Nodes) == 0 && len(c.SuperNodes) > 0 {
		if err := c.Nodes.Set(strings.Join(c.SuperNodes, ",")); err != nil {
			return errorf(ExitConfig, "supernodes: %w", err)
		}
	}
	ignored, err := c.applyDfgetFlags()
	if err != nil {
		return errorf(ExitConfig, "%w", err)
	}
	c.IgnoredDfgetFlags = ignored
	if c.LocalIP != "" && !isIPv4(c.LocalIP) {
		return errorf(ExitConfig, "invalid localIP %q: want a dotted IPv4 address", c.LocalIP)
	}
	if c.Port < 1 || c.Port > 65535 {
		return errorf(ExitPortInvalid, "invalid port %d: want 1..65535", c.Port)
	}
	if c.PeerPort != 0 && (c.PeerPort < 1 || c.PeerPort > 65535) {
		return errorf(ExitPortInvalid, "invalid peerPort %d: want 1..65535", c.PeerPort)
	}
	if c.RateLimit < 0 {
		return errorf(ExitRateInvalid, "invalid ratelimit %v: negative", c.RateLimit)
	}
	if c.MaxProcs < 0 {
		return errorf(ExitConfig, "invalid maxprocs %d: negative", c.MaxProcs)
	}
	if c.MaxStreams < 0 {
		return errorf(ExitConfig, "invalid maxStreams %d: negative (0 is no cap)", c.MaxStreams)
	}
	if err := c.completePaths(); err != nil {
		return err
	}
	if err := c.loadTLS(); err != nil {
		return err
	}
	u, err := url.Parse(c.RegistryMirror.Remote)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errorf(ExitConfig, "invalid registry %q: want http(s)://host[:port]", c.RegistryMirror.Remote)
	}
	if err := proxy.ValidateRules(c.Proxies); err != nil {
		return errorf(ExitConfig, "%w", err)
	}
	if err := c.HijackHTTPS.Validate(); err != nil {
		return errorf(ExitConfig, "%w", err)
	}
	for _, h := range c.ProxyDigestHosts {
		if !validHost(h) {
			return errorf(ExitConfig, "proxy_digest_hosts: invalid entry %q: want host or host:port", h)
		}
	}
	for _, f := range c.RegistryMirror.Certs {
		if _, err := os.Stat(f); err != nil {
			return errorf(ExitConfig, "registry_mirror certs: %w", err)
		}
	}
	if err := c.LogConfig.Validate(); err != nil {
		return err
	}
	return c.completeDownloads()
}

// completeDownloads reads dfget's properties and builds the dfget
// configuration every download gets, once: an error in either would
// otherwise fail every blob, request after request.
func (c *Config) completeDownloads() error {
	p, err := dfgetcfg.ReadProperties(c.DfgetPropertyFile)
	if err != nil {
		return errorf(ExitConfig, "dfget properties: %w", err)
	}
	c.DfgetProperties = p
	if err := c.SwarmOptions().Check(); err != nil {
		return errorf(ExitConfig, "%w", err)
	}
	return nil
}

// SwarmOptions are the swarm's options this configuration gives; the
// caller adds the logger, the metrics and the dfget binary.
func (c *Config) SwarmOptions() swarm.Options {
	return swarm.Options{Nodes: c.Nodes, Home: c.WorkHome, IP: c.LocalIP, RateLimit: c.RateLimit,
		Properties: c.DfgetProperties, Verbose: c.Verbose, ServerExecutable: c.DfPath, MaxStreams: c.MaxStreams}
}

// loadTLS loads the listener's certificate and key, so that a pair that
// cannot serve stops dfdaemon before it listens.
func (c *Config) loadTLS() error {
	if (c.CertPem == "") != (c.KeyPem == "") {
		return errorf(ExitConfig, "certpem and keypem go together: give both or neither")
	}
	if c.CertPem == "" {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(c.CertPem, c.KeyPem)
	if err != nil {
		return errorf(ExitConfig, "certpem/keypem: %w", err)
	}
	c.TLSCert = &pair
	return nil
}

// completePaths makes the work home and dfpath absolute and creates the
// local repo.
func (c *Config) completePaths() error {
	if c.WorkHome == "" {
		h, err := dfgetcfg.DefaultHome()
		if err != nil {
			return errorf(ExitHomeMissing, "no workHome and no home directory: %w", err)
		}
		c.WorkHome = h
	}
	home, err := filepath.Abs(c.WorkHome)
	if err != nil {
		return errorf(ExitHomeMissing, "invalid workHome %q: %w", c.WorkHome, err)
	}
	c.WorkHome = home
	if c.DfPath != "" {
		p, err := exec.LookPath(c.DfPath)
		if err == nil {
			p, err = filepath.Abs(p)
		}
		if err != nil {
			return errorf(ExitDfgetMissing, "invalid dfpath %q: %w", c.DfPath, err)
		}
		c.DfPath = p
	}
	if c.LocalRepo == "" {
		c.LocalRepo = filepath.Join(home, "dfdaemon", "data")
	}
	if !filepath.IsAbs(c.LocalRepo) {
		return errorf(ExitPathNotAbs, "invalid localrepo %q: not an absolute path", c.LocalRepo)
	}
	if err := os.MkdirAll(c.LocalRepo, 0o755); err != nil {
		return errorf(ExitRepoCreateFail, "create localrepo: %w", err)
	}
	return nil
}

// Registry is the mirrored registry's base URL (validated by Load).
func (c *Config) Registry() *url.URL {
	u, _ := url.Parse(strings.TrimRight(c.RegistryMirror.Remote, "/"))
	return u
}

// DigestHosts are the origins whose registry blobs the proxy shares by
// digest alone: the mirrored registry's and proxy_digest_hosts. The
// client names a proxied request's origin, so only origins the operator
// named are trusted to answer a blob's HEAD for the clients allowed to
// read it; any other origin's blob is a task of its own URL.
func (c *Config) DigestHosts() []string {
	return append([]string{c.Registry().Host}, c.ProxyDigestHosts...)
}

// isIPv4 reports whether s is a dotted IPv4 address, the only form dfget
// and the supernode take for a peer's IP.
func isIPv4(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.To4() != nil && !strings.Contains(s, ":")
}

// validHost reports whether h is "host" or "host:port", nothing more.
func validHost(h string) bool {
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.Hostname() != "" && u.User == nil
}
