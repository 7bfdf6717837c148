// Command supernode runs the Damselfly supernode: the scheduler, the CDN
// cache and its piece server. It only parses flags and calls the daemon.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/pkg/clidoc"
	"github.com/damselfly-p2p/damselfly/pkg/shutdown"
	"github.com/damselfly-p2p/damselfly/pkg/version"
	"github.com/damselfly-p2p/damselfly/supernode/config"
	"github.com/damselfly-p2p/damselfly/supernode/daemon"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "supernode:", err)
		os.Exit(1)
	}
}

// bindFlags binds every v1 flag to the fields of b.
func bindFlags(fs *pflag.FlagSet, b *config.Base) {
	fs.StringVar(&b.CDNPattern, "cdn-pattern", b.CDNPattern, "cdn pattern: local (cache on disk) or source (peers fetch ranges from the source)")
	fs.IntVar(&b.ListenPort, "port", b.ListenPort, "API port")
	fs.IntVar(&b.DownloadPort, "download-port", b.DownloadPort, "piece server port (serves <home-dir>/repo/download)")
	fs.StringVar(&b.HomeDir, "home-dir", b.HomeDir, "home directory (cache in repo/, logs in logs/)")
	// Show the default as $HOME/..., not as the home of whoever ran
	// --help or gen-doc.
	if h, err := os.UserHomeDir(); err == nil && strings.HasPrefix(b.HomeDir, h+string(filepath.Separator)) {
		fs.Lookup("home-dir").DefValue = "$HOME" + strings.TrimPrefix(b.HomeDir, h)
	}
	fs.Var(&b.SystemReservedBandwidth, "system-bandwidth", "bandwidth reserved for the system, subtracted from --max-bandwidth")
	fs.Var(&b.MaxBandwidth, "max-bandwidth", "network bandwidth of the host, 0 for unlimited; when set, the CDN reads sources at max-bandwidth minus system-bandwidth")
	fs.IntVar(&b.SchedulerCorePoolSize, "pool-size", b.SchedulerCorePoolSize, "accepted for v1 compatibility; unused")
	fs.BoolVar(&b.EnableProfiler, "profiler", b.EnableProfiler, "serve /debug/pprof on the API port")
	fs.BoolVarP(&b.Debug, "debug", "D", b.Debug, "debug logging and /debug/pprof")
	fs.IntVar(&b.PeerUpLimit, "up-limit", b.PeerUpLimit, "concurrent uploads per peer")
	fs.IntVar(&b.PeerDownLimit, "down-limit", b.PeerDownLimit, "concurrent pieces per client")
	fs.StringVar(&b.AdvertiseIP, "advertise-ip", b.AdvertiseIP, "IPv4 the supernode announces (default: first non-loopback IPv4)")
	fs.DurationVar(&b.FailAccessInterval, "fail-access-interval", b.FailAccessInterval, "how long a source failure is remembered before registration retries it")
	fs.DurationVar(&b.GCInitialDelay, "gc-initial-delay", b.GCInitialDelay, "delay before the first GC")
	fs.DurationVar(&b.GCMetaInterval, "gc-meta-interval", b.GCMetaInterval, "interval of task and peer GC")
	fs.DurationVar(&b.TaskExpireTime, "task-expire-time", b.TaskExpireTime, "idle time after which a task leaves memory")
	fs.DurationVar(&b.PeerGCDelay, "peer-gc-delay", b.PeerGCDelay, "time a peer stays after going offline")
	fs.Var(&b.SourceAllow, "source-allow", "comma-separated source hosts (names, IPs or CIDRs) the supernode may fetch from (default: any host; loopback, link-local and unspecified addresses only if listed)")
	fs.StringVar(&b.AuthToken, "auth-token", b.AuthToken, "shared token API clients must send as 'Authorization: Bearer <token>' (default: none; prefer the YAML key authToken, flags show in ps)")
	fs.StringVar(&b.TLSCert, "tls-cert", b.TLSCert, "PEM certificate (chain) for HTTPS on the API port; needs --tls-key")
	fs.StringVar(&b.TLSKey, "tls-key", b.TLSKey, "PEM private key for --tls-cert")
	fs.Var(&b.Cluster, "cluster", "the supernodes of this one's cluster, itself included (advertise-ip:port), as dfget's --node: host[:port][=weight],... A name stands for all its addresses. A task whose home is another live member is read from it, not from the origin (empty: no cluster)")
	fs.DurationVar(&b.ClusterProbeInterval, "cluster-probe-interval", b.ClusterProbeInterval, "time between probes of the cluster's members and resolutions of their names")
	fs.DurationVar(&b.PreheatExpireTime, "preheat-expire-time", b.PreheatExpireTime, "how long a finished preheat's record is kept")
	fs.IntVar(&b.PreheatLimit, "preheat-limit", b.PreheatLimit, "preheats (image layers count one each) running at once; the rest wait in order")
	fs.IntVar(&b.CDNFillLimit, "cdn-fill-limit", b.CDNFillLimit, "CDN fills (reads of a source into the cache) running at once, at least 1; the others wait in order, their clients told to wait")
	fs.IntVar(&b.PreheatMaxRecords, "preheat-max-records", b.PreheatMaxRecords, "preheat records held at most, image layers included; beyond it POST /preheats answers 503")
	fs.BoolVar(&b.BindClientAddress, "bind-client-address", b.BindClientAddress, "take a client's calls only from the address it registered from (--bind-client-address=false where one client's source address changes between requests, e.g. a NAT pool)")
	fs.Var(&b.ClusterCACerts, "cluster-cacerts", "comma-separated PEM files of the CAs of the members' certificates; with --tls-cert, members are reached over HTTPS and trusted by these, the system's CAs and --tls-cert's own certificates")
}

func newRoot() *cobra.Command {
	defaults := config.Default()
	flagCfg := defaults
	var configPath string
	root := &cobra.Command{
		Use:           "supernode",
		Short:         "Damselfly supernode: scheduler, CDN cache and piece server",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&configPath, "config", config.DefaultConfigPath, "YAML config file (keys under base:)")
	bindFlags(pf, &flagCfg.Base)

	// effective: defaults, then the YAML file, then the flags given.
	effective := func(cmd *cobra.Command) (config.Config, error) {
		cfg := config.Default()
		if err := config.Load(&cfg, configPath, cmd.Flags().Changed("config")); err != nil {
			return cfg, err
		}
		fs := pflag.NewFlagSet("apply", pflag.ContinueOnError)
		bindFlags(fs, &cfg.Base)
		var err error
		cmd.Flags().Visit(func(f *pflag.Flag) {
			if g := fs.Lookup(f.Name); g != nil && err == nil {
				err = fs.Set(f.Name, f.Value.String())
			}
		})
		return cfg, err
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := effective(cmd)
		if err != nil {
			return err
		}
		d, err := daemon.New(cfg, os.Stderr)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), shutdown.Signals()...)
		defer stop()
		return d.Run(ctx)
	}
	cfgCmd := &cobra.Command{Use: "config", Short: "configuration helpers", Args: cobra.NoArgs}
	cfgCmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "print the effective configuration as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := effective(cmd)
			if err != nil {
				return err
			}
			// Show derived values (advertise IP, load limit) as the daemon uses them.
			if err := cfg.Base.Validate(); err != nil {
				return err
			}
			b, err := config.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	root.AddCommand(cfgCmd, clidoc.Command(root), &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := version.Info()
			fmt.Fprintf(cmd.OutOrStdout(), "supernode version %s (revision %s, built %s, %s %s/%s)\n",
				v.Version, v.Revision, v.BuildDate, v.GoVersion, v.OS, v.Arch)
		},
	})
	return root
}
