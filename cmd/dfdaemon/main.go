// Command dfdaemon is the host's registry mirror and HTTP(S) proxy:
// container engines pull image layers through it, and it streams each
// layer blob through the Dragonfly swarm. It only parses flags and wires
// the dfdaemon packages.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/dfdaemon/ca"
	"github.com/damselfly-p2p/damselfly/dfdaemon/config"
	"github.com/damselfly-p2p/damselfly/dfdaemon/mirror"
	"github.com/damselfly-p2p/damselfly/dfdaemon/peer"
	"github.com/damselfly-p2p/damselfly/dfdaemon/proxy"
	"github.com/damselfly-p2p/damselfly/dfdaemon/server"
	"github.com/damselfly-p2p/damselfly/dfdaemon/swarm"
	"github.com/damselfly-p2p/damselfly/dfget/core"
	"github.com/damselfly-p2p/damselfly/pkg/clidoc"
	"github.com/damselfly-p2p/damselfly/pkg/shutdown"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "dfdaemon: %v\n", err)
	var ce *config.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 1
}

func newRoot() *cobra.Command {
	cfg := config.New()
	root := &cobra.Command{
		Use:   "dfdaemon",
		Short: "Registry mirror that pulls image layers through the Dragonfly swarm",
		Long: "dfdaemon mirrors a registry's /v2/ API for container engines: each layer blob GET streams through " +
			"the Dragonfly swarm, checked against its digest; everything else goes to the registry as it is.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Load(cmd.Flags()); err != nil {
				return err
			}
			if cfg.MaxProcs > 0 {
				runtime.GOMAXPROCS(cfg.MaxProcs)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), shutdown.Signals()...)
			defer stop()
			return serve(ctx, cfg)
		},
	}
	cfg.BindFlags(root.Flags())
	root.AddCommand(version.Command("dfdaemon"), ca.Command(), clidoc.Command(root))
	return root
}

// serve runs the peer server, the swarm, the mirror and the listener
// until ctx ends.
func serve(ctx context.Context, cfg *config.Config) error {
	logDir := filepath.Join(cfg.WorkHome, "logs")
	log, closeLog, err := core.NewLogger(logDir, "dfdaemon.log", cfg.LogConfig, cfg.Verbose, false)
	if err != nil {
		return err
	}
	defer closeLog()
	if len(cfg.IgnoredDfgetFlags) > 0 {
		log.Warnf("dfget_flags %v ignored: downloads run in this process (--node, --ip, --port and --verbose are taken)",
			cfg.IgnoredDfgetFlags)
	}
	reg := server.NewRegistry()
	pctx, stopPeer := context.WithCancel(context.Background())
	ps, err := peer.Start(pctx, cfg.WorkHome, "0.0.0.0", cfg.PeerPort, log)
	if err != nil {
		stopPeer()
		return fmt.Errorf("peer server: %w", err)
	}
	defer func() { stopPeer(); _ = ps.Wait() }()
	opt := cfg.SwarmOptions()
	opt.ServerExecutable, opt.Log, opt.Metrics = cmp.Or(opt.ServerExecutable, dfgetBeside()), log, swarm.NewMetrics(reg)
	sw := swarm.New(opt)
	m := &mirror.Mirror{Remote: cfg.Registry(), CACerts: cfg.RegistryMirror.Certs, Insecure: cfg.RegistryMirror.Insecure,
		Direct: cfg.RegistryMirror.Direct, Swarm: sw}
	px, err := proxy.New(proxy.Options{Rules: cfg.Proxies, Hijack: cfg.HijackHTTPS, Swarm: swarm.URLSwarm{S: sw, DigestHosts: cfg.DigestHosts()},
		Logger:     log,
		Registerer: reg, Via: sw.Via()})
	if err != nil {
		return &config.Error{Code: config.ExitConfig, Err: fmt.Errorf("proxy: %w", err)}
	}
	defer px.Close()
	h := &server.Handler{Mirror: m, Proxy: px, Metrics: server.MetricsHandler(reg)}
	l, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return &config.Error{Code: config.ExitPortInvalid, Err: fmt.Errorf("listen: %w", err)}
	}
	fmt.Printf("dfdaemon %s listening on %s (registry %s, peer server port %d)\n", version.Version, l.Addr(),
		cfg.Registry().Redacted(), ps.Port)
	log.Infof("listening on %s, registry %s, peer server port %d, at most %d streams in flight (0: no cap)", l.Addr(),
		cfg.Registry().Redacted(), ps.Port, cfg.MaxStreams)
	return server.Serve(ctx, l, h, cfg.TLSCert, 30*time.Second)
}

// dfgetBeside is the dfget binary next to this one, started as the peer
// server should the in-process one ever be displaced ("" if none).
func dfgetBeside() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "dfget")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
