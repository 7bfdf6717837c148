// Package config holds the supernode's configuration: the Dragonfly 1.x
// flags and their YAML keys under "base:", their defaults, and the rules that
// tie them together (home directory layout, advertised IP, bandwidth).
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/damselfly-p2p/damselfly/pkg/logfile"
	"github.com/damselfly-p2p/damselfly/pkg/netguard"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/rate"
)

// DefaultConfigPath is read when --config is not given; its absence is fine.
const DefaultConfigPath = "/etc/dragonfly/supernode.yml"

// CDN patterns.
const (
	CDNPatternLocal  = "local"
	CDNPatternSource = "source"
)

// Config is the whole YAML document.
type Config struct {
	Base Base `yaml:"base"`
}

// Base holds the v1 `base:` keys. Durations are Go duration strings ("3m").
type Base struct {
	CDNPattern              string        `yaml:"cdnPattern"`
	ListenPort              int           `yaml:"listenPort"`
	DownloadPort            int           `yaml:"downloadPort"`
	HomeDir                 string        `yaml:"homeDir"`
	SystemReservedBandwidth rate.Rate     `yaml:"systemReservedBandwidth"`
	MaxBandwidth            rate.Rate     `yaml:"maxBandwidth"`
	SchedulerCorePoolSize   int           `yaml:"schedulerCorePoolSize"`
	EnableProfiler          bool          `yaml:"enableProfiler"`
	Debug                   bool          `yaml:"debug"`
	PeerUpLimit             int           `yaml:"peerUpLimit"`
	PeerDownLimit           int           `yaml:"peerDownLimit"`
	EliminationLimit        int           `yaml:"eliminationLimit"`
	FailureCountLimit       int           `yaml:"failureCountLimit"`
	LinkLimit               rate.Rate     `yaml:"linkLimit"`
	AdvertiseIP             string        `yaml:"advertiseIP"`
	FailAccessInterval      time.Duration `yaml:"failAccessInterval"`
	GCInitialDelay          time.Duration `yaml:"gcInitialDelay"`
	GCMetaInterval          time.Duration `yaml:"gcMetaInterval"`
	TaskExpireTime          time.Duration `yaml:"taskExpireTime"`
	PeerGCDelay             time.Duration `yaml:"peerGCDelay"`
	GCDiskInterval          time.Duration `yaml:"gcDiskInterval"`
	YoungGCThreshold        rate.Rate     `yaml:"youngGCThreshold"`
	FullGCThreshold         rate.Rate     `yaml:"fullGCThreshold"`
	IntervalThreshold       time.Duration `yaml:"IntervalThreshold"`
	CleanRatio              int           `yaml:"CleanRatio"`
	// SupernodeLoadLimit caps concurrent pieces served by the supernode per
	// task across all clients. v1 tied it to peerDownLimit (4); a swarm start
	// needs more. 0 means 4 x peerDownLimit.
	SupernodeLoadLimit int `yaml:"supernodeLoadLimit"`
	// SourceTimeout bounds connecting to the source and waiting for its
	// response headers (not the body transfer).
	SourceTimeout time.Duration `yaml:"sourceTimeout"`
	// PieceWait is how long /peer/task may wait for a piece to appear before
	// answering 602 (long poll). 0 answers at once, as v1. At most
	// MaxPieceWait.
	PieceWait time.Duration `yaml:"pieceWait"`
	// SourceAllow, when not empty, is the only set of source hosts the
	// supernode fetches from (registrations and preheats of other hosts
	// are refused). Empty allows any http/https host, as v1. Entries are
	// host names, IPs or CIDR prefixes; they are also the only way to let
	// sources connect to loopback, link-local or unspecified addresses
	// (see pkg/netguard).
	SourceAllow HostList `yaml:"sourceAllow"`
	// AuthToken, when set, must be sent by API clients as
	// "Authorization: Bearer <token>". Empty: open API, as v1.
	AuthToken string `yaml:"authToken"`
	// TLSCert and TLSKey (PEM files), when both set, make the API port
	// serve HTTPS. The piece server stays plain HTTP (pieces are md5-checked).
	TLSCert string `yaml:"tlsCert"`
	TLSKey  string `yaml:"tlsKey"`
	// LogConfig rotates logs/app.log (v1 key; 0 means the default).
	LogConfig logfile.Rotation `yaml:"logConfig"`
	// Cluster lists the supernodes of this one's cluster, this one
	// included (its advertise IP and API port), as dfget's --node:
	// host[:port][=weight]. A name stands for all its addresses. Empty:
	// no cluster, every CDN reads the origin.
	Cluster ClusterList `yaml:"cluster"`
	// ClusterProbeInterval is the time between probes of the members
	// (and resolutions of their names).
	ClusterProbeInterval time.Duration `yaml:"clusterProbeInterval"`
	// ClusterCACerts are PEM files of the CAs that sign the members'
	// certificates. With TLSCert set, members are reached over HTTPS and
	// trusted by these, the system's CAs and the certificates of TLSCert
	// itself (members sharing one certificate need nothing more).
	ClusterCACerts FileList `yaml:"clusterCACerts"`
	// PreheatExpireTime is how long a finished preheat's record is kept
	// (v1 kept them forever); 0 means 24h.
	PreheatExpireTime time.Duration `yaml:"preheatExpireTime"`
	// PreheatLimit is how many preheats run at once (an image's layers
	// count one each); the rest wait in order. 0 means 8.
	PreheatLimit int `yaml:"preheatLimit"`
	// PreheatMaxRecords bounds the preheat records held, layers included;
	// beyond it POST /preheats answers 503. 0 means 10000.
	PreheatMaxRecords int `yaml:"preheatMaxRecords"`
	// CDNFillLimit caps the CDN fills (reads of a source, or of another
	// member, into the cache) running at once; the others wait their turn
	// in order. At least 1.
	CDNFillLimit int `yaml:"cdnFillLimit"`
	// BindClientAddress takes a client's calls (/peer/task, piece and
	// service-down reports) only from the address it registered from:
	// its CID is no secret, every 601 shows it to other clients. Off
	// (as v1) only where one client's source address changes between
	// requests, such as a NAT pool.
	BindClientAddress bool `yaml:"bindClientAddress"`
}

// ClusterList is the --cluster flag and the cluster key: one
// comma-separated string, or a YAML list of nodes.
type ClusterList struct{ nodes.List }

// Set parses a comma-separated list; an empty one clears it.
func (c *ClusterList) Set(v string) error {
	if strings.TrimSpace(strings.ReplaceAll(v, ",", "")) == "" {
		c.List = nil
		return nil
	}
	return c.List.Set(v)
}

// UnmarshalYAML reads a string or a list of strings.
func (c *ClusterList) UnmarshalYAML(n *yaml.Node) error {
	v := n.Value
	if n.Kind == yaml.SequenceNode {
		var items []string
		if err := n.Decode(&items); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		v = strings.Join(items, ",")
	} else if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("cluster: want a list of nodes or one comma-separated string (line %d)", n.Line)
	}
	if err := c.Set(v); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// MarshalYAML writes the list as one string.
func (c ClusterList) MarshalYAML() (any, error) { return c.List.String(), nil }

// ClusterSelf is this supernode's ID in its cluster: the address members
// and dfgets reach its API on.
func (b *Base) ClusterSelf() string {
	return net.JoinHostPort(b.AdvertiseIP, strconv.Itoa(b.ListenPort))
}

// HostList is a list of host names, given as one comma-separated flag
// value or a YAML list. Set replaces the list, so a flag re-applied over
// the YAML value wins whole.
type HostList []string

func (h *HostList) String() string { return strings.Join(*h, ",") }

// Type is the pflag type name.
func (h *HostList) Type() string { return "hosts" }

// Set parses "a,b,c"; blanks are dropped.
func (h *HostList) Set(v string) error {
	var out HostList
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	*h = out
	return nil
}

// FileList is a list of file paths, read as HostList is.
type FileList []string

func (l *FileList) String() string { return (*HostList)(l).String() }

// Type is the pflag type name.
func (l *FileList) Type() string { return "files" }

// Set parses "a,b,c"; blanks are dropped.
func (l *FileList) Set(v string) error { return (*HostList)(l).Set(v) }

// Default returns the defaults of every key. HomeDir is under the user's
// home so a non-root user can run without a config file.
func Default() Config {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = os.TempDir()
	}
	return Config{Base: Base{
		CDNPattern:              CDNPatternLocal,
		ListenPort:              8002,
		DownloadPort:            8001,
		HomeDir:                 filepath.Join(home, ".damselfly", "supernode"),
		SystemReservedBandwidth: 20 * rate.MB,
		MaxBandwidth:            0,
		SchedulerCorePoolSize:   10,
		PeerUpLimit:             5,
		PeerDownLimit:           4,
		LogConfig:               logfile.Rotation{MaxSize: logfile.DefaultMaxSizeMB, MaxBackups: logfile.DefaultMaxBackups},
		EliminationLimit:        5,
		FailureCountLimit:       5,
		LinkLimit:               20 * rate.MB,
		FailAccessInterval:      3 * time.Minute,
		GCInitialDelay:          6 * time.Second,
		GCMetaInterval:          2 * time.Minute,
		TaskExpireTime:          3 * time.Minute,
		PeerGCDelay:             3 * time.Minute,
		GCDiskInterval:          15 * time.Second,
		YoungGCThreshold:        20 * rate.GB,
		FullGCThreshold:         5 * rate.GB,
		IntervalThreshold:       2 * time.Hour,
		CleanRatio:              1,
		SourceTimeout:           10 * time.Second,
		PieceWait:               300 * time.Millisecond,
		ClusterProbeInterval:    time.Second,
		PreheatExpireTime:       24 * time.Hour,
		PreheatLimit:            8,
		PreheatMaxRecords:       10000,
		CDNFillLimit:            DefaultCDNFillLimit,
		BindClientAddress:       true,
	}}
}

// Load reads path into cfg (keys present in the file override cfg). When
// explicit is false a missing file is not an error.
func Load(cfg *Config, path string, explicit bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if err := yaml.Unmarshal(b, cfg); err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	return nil
}

// Marshal renders cfg as YAML (for `supernode config default`). A set
// auth token is shown as "<redacted>": the output is meant to be pasted into
// tickets and chats.
func Marshal(cfg Config) ([]byte, error) {
	if cfg.Base.AuthToken != "" {
		cfg.Base.AuthToken = "<redacted>"
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return b, nil
}

// MaxPieceWait bounds PieceWait. dfget gives a /peer/task call 10 s; a
// long poll near that, plus the scheduling and the round trip, would time
// out and make every waiting client leave this supernode for the next.
const MaxPieceWait = 5 * time.Second

// DefaultCDNFillLimit is the default of CDNFillLimit. A fill holds up to
// five piece buffers: 16 fills hold at most 320 MiB with 4 MiB pieces, 1.2
// GiB with the largest (15 MiB). It is twice the preheat limit, so
// preheats alone never fill it; a fixed number, not a multiple of CPUs, as
// the bound is on memory and on the origin's connections.
const DefaultCDNFillLimit = 16

// Validate checks ranges and fills derived values (advertise IP).
func (b *Base) Validate() error {
	switch {
	case b.CDNPattern != CDNPatternLocal && b.CDNPattern != CDNPatternSource:
		return fmt.Errorf("invalid cdn pattern %q: want local or source", b.CDNPattern)
	case b.ListenPort <= 0 || b.ListenPort > 65535:
		return fmt.Errorf("invalid port %d", b.ListenPort)
	case b.DownloadPort <= 0 || b.DownloadPort > 65535:
		return fmt.Errorf("invalid download port %d", b.DownloadPort)
	case b.ListenPort == b.DownloadPort:
		return fmt.Errorf("port and download port are both %d", b.ListenPort)
	case b.HomeDir == "":
		return errors.New("empty home dir")
	case b.PeerUpLimit <= 0 || b.PeerDownLimit <= 0:
		return fmt.Errorf("up-limit (%d) and down-limit (%d) must be positive", b.PeerUpLimit, b.PeerDownLimit)
	case b.MaxBandwidth < 0 || b.SystemReservedBandwidth < 0:
		return errors.New("negative bandwidth")
	case b.TaskExpireTime <= 0 || b.PeerGCDelay <= 0 || b.GCMetaInterval <= 0 || b.GCDiskInterval <= 0:
		return errors.New("task-expire-time, peer-gc-delay, gc-meta-interval and gcDiskInterval must be positive")
	case b.FailAccessInterval < 0 || b.GCInitialDelay < 0 || b.PieceWait < 0 || b.ClusterProbeInterval < 0:
		return errors.New("negative duration")
	case b.PieceWait > MaxPieceWait:
		return fmt.Errorf("pieceWait %v is above %v: dfget gives up on a /peer/task call after 10 s", b.PieceWait, MaxPieceWait)
	case b.PreheatExpireTime < 0 || b.PreheatLimit < 0 || b.PreheatMaxRecords < 0:
		return errors.New("preheat-expire-time, preheat-limit and preheat-max-records must not be negative")
	case b.CDNFillLimit < 1:
		return fmt.Errorf("cdn-fill-limit %d: want at least 1 (fills running at once)", b.CDNFillLimit)
	case (b.TLSCert == "") != (b.TLSKey == ""):
		return errors.New("tls-cert and tls-key must be given together")
	}
	if err := b.LogConfig.Validate(); err != nil {
		return err
	}
	for _, h := range b.SourceAllow {
		if err := netguard.ValidateEntry(h); err != nil {
			return err
		}
	}
	if b.EliminationLimit <= 0 {
		b.EliminationLimit = 5
	}
	if b.FailureCountLimit <= 0 {
		b.FailureCountLimit = 5
	}
	if b.CleanRatio <= 0 || b.CleanRatio > 10 {
		b.CleanRatio = 1
	}
	if b.SupernodeLoadLimit <= 0 {
		b.SupernodeLoadLimit = 4 * b.PeerDownLimit
	}
	if b.SourceTimeout <= 0 {
		b.SourceTimeout = 10 * time.Second
	}
	if b.AdvertiseIP == "" {
		b.AdvertiseIP = firstIPv4()
	} else if ip := net.ParseIP(b.AdvertiseIP); ip == nil || ip.To4() == nil {
		return fmt.Errorf("invalid advertise ip %q: want an IPv4 address", b.AdvertiseIP)
	}
	abs, err := filepath.Abs(b.HomeDir)
	if err != nil {
		return fmt.Errorf("home dir %q: %w", b.HomeDir, err)
	}
	b.HomeDir = abs
	return nil
}

// CDNLimit is the CDN's source bandwidth in bytes/s; 0 means unlimited.
// v1 always limited the CDN to maxBandwidth-systemReservedBandwidth; here the
// limit applies only when --max-bandwidth was set, so the CDN is not slower
// than a plain download by default.
func (b *Base) CDNLimit() rate.Rate {
	if b.MaxBandwidth <= 0 {
		return 0
	}
	l := b.MaxBandwidth - b.SystemReservedBandwidth
	if l <= 0 {
		l = b.MaxBandwidth
	}
	return l
}

// RepoDir is <home>/repo, the root served by the piece server.
func (b *Base) RepoDir() string { return filepath.Join(b.HomeDir, "repo") }

// LogDir is <home>/logs.
func (b *Base) LogDir() string { return filepath.Join(b.HomeDir, "logs") }

func firstIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
				if v4 := n.IP.To4(); v4 != nil {
					return v4.String()
				}
			}
		}
	}
	return "127.0.0.1"
}
