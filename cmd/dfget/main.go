// Command dfget downloads a file through a Dragonfly supernode (P2P), and
// as `dfget server` runs the host's peer server. It only parses flags and
// wires them to the dfget packages.
package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core"
	"github.com/damselfly-p2p/damselfly/dfget/core/progressbar"
	"github.com/damselfly-p2p/damselfly/dfget/core/uploader"
	"github.com/damselfly-p2p/damselfly/pkg/clidoc"
	"github.com/damselfly-p2p/damselfly/pkg/shutdown"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// exitError carries an exit status out of cobra.
type exitError int

func (e exitError) Error() string { return "exit " + strconv.Itoa(int(e)) }

func run(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	if e, ok := err.(exitError); ok {
		return int(e)
	}
	fmt.Fprintf(os.Stderr, "dfget: %v\n", err)
	return config.ExitUsage
}

// seconds is a duration flag that also accepts a plain number of seconds,
// as Dragonfly 1.x's --timeout did.
type seconds struct{ d *time.Duration }

func (s seconds) String() string { return s.d.String() }
func (s seconds) Type() string   { return "duration" }
func (s seconds) Set(v string) error {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return fmt.Errorf("negative")
		}
		*s.d = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("invalid duration %q", v)
	}
	*s.d = d
	return nil
}

func newRoot() *cobra.Command {
	cfg := config.New()
	var cpuProfile string
	root := &cobra.Command{
		Use:           "dfget",
		Short:         "Download a file through a Dragonfly P2P network",
		Long:          "dfget downloads a file through Dragonfly supernodes and its peers, falling back to the source.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("url") {
				return fmt.Errorf("please use -u/--url to give the URL to download")
			}
			if err := propertyFile(cmd.Flags(), cfg); err != nil {
				return err
			}
			if err := cfg.Complete(); err != nil {
				return err
			}
			stop, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stop()
			return download(cmd.Context(), cfg)
		},
	}
	downloadFlags(root.Flags(), cfg, &cpuProfile)
	root.AddCommand(newServer(), version.Command("dfget"), clidoc.Command(root))
	return root
}

// downloadFlags binds the download's flags to cfg.
func downloadFlags(f *pflag.FlagSet, cfg *config.Config, cpuProfile *string) {
	f.StringVarP(&cfg.URL, "url", "u", "", "URL of the file to download")
	f.StringVarP(&cfg.Output, "output", "o", "", "destination path (default: the last URL path segment; - for stdout, as --stream)")
	f.VarP(&cfg.LocalLimit, "locallimit", "s", "rate limit of this download, e.g. 20MB; 0 = the properties' localLimit, else no limit")
	f.Var(&cfg.MinRate, "minrate", "minimal expected rate, used for the default timeout; 0 = 64KB")
	f.Var(&cfg.TotalLimit, "totallimit", "rate limit shared by every download and upload on this host; 0 = the properties' totalLimit, else no limit")
	f.VarP(seconds{&cfg.Timeout}, "timeout", "e", "download timeout, e.g. 300 or 5m; 0 = length/minrate + 10s")
	f.StringVarP(&cfg.Md5, "md5", "m", "", "expected md5 of the file")
	f.StringVar(&cfg.Digest, "digest", "", "expected digest of the file, sha256:<64 hex digits>")
	f.StringVarP(&cfg.Identifier, "identifier", "i", "", "task identifier when --md5 is not given")
	f.StringVar(&cfg.CallSystem, "callsystem", "", "name of the calling system, for statistics")
	f.StringSliceVar(&cfg.CACerts, "cacerts", nil, "CA certificate files (PEM) for the source")
	f.BoolVar(&cfg.Insecure, "insecure", false, "skip TLS verification of the source")
	f.StringVarP(&cfg.Pattern, "pattern", "p", config.PatternP2P, "download pattern: p2p, cdn or source")
	f.StringVarP(&cfg.Filter, "filter", "f", "", "&-separated query keys left out of the task URL")
	f.StringArrayVar(&cfg.Headers, "header", nil, "HTTP header for the source, \"Key: Value\" (repeatable)")
	f.VarP(&cfg.Nodes, "node", "n", "supernodes, host[:port][=weight] comma-separated (default from /etc/dragonfly/dfget.yml or 127.0.0.1:8002)")
	f.StringVar(&cfg.NodeOrder, "node-order", config.NodeOrderHome, "order of --node for a task: home (rendezvous hashing of the task, so its peers meet on one supernode) or random (Dragonfly 1.x)")
	f.BoolVar(&cfg.NotBS, "notbs", false, "never fall back to downloading from the source")
	f.BoolVar(&cfg.Dfdaemon, "dfdaemon", false, "mark the download as coming from dfdaemon")
	f.IntVar(&cfg.ClientQueue, "clientqueue", 0, "pieces fetched at once, bounding piece buffers; 0 = properties clientQueueSize, else 6")
	f.BoolVarP(&cfg.ShowBar, "showbar", "b", false, "show a progress bar on a terminal")
	f.BoolVar(&cfg.Console, "console", false, "also log to the console")
	f.BoolVar(&cfg.Verbose, "verbose", false, "debug logging")
	f.StringVar(&cfg.Home, "home", "", "work home (default from properties, else ~/.small-dragonfly)")
	f.StringVar(&cfg.IP, "ip", "", "IP address peers reach this host on (default: the address used to reach the supernode)")
	f.IntVar(&cfg.Port, "port", 0, "peer server port (default: chosen automatically)")
	f.DurationVar(&cfg.ExpireTime, "expiretime", config.DefaultExpireTime, "peer server: keep a served file this long after its last access")
	f.DurationVar(&cfg.AliveTime, "alivetime", config.DefaultAliveTime, "peer server: exit after idling this long")
	f.BoolVar(&cfg.Stream, "stream", false, "write the file to stdout in order, never to disk")
	f.IntVar(&cfg.WindowSize, "window-size", config.DefaultWindowSize, "stream mode: pieces held in the window")
	f.StringVar(&cfg.NodeToken, "node-token", "", "token sent to the supernodes as 'Authorization: Bearer <token>' (default: properties nodeToken, else none)")
	f.StringSliceVar(&cfg.NodeCACerts, "node-cacerts", nil, "CA certificate files (PEM) of the supernodes; when set, supernodes are reached over HTTPS")
	f.StringVar(&cfg.PropertyFile, "config", config.DefaultPropertyFile,
		"YAML properties file, which must exist when given; not given, this default if it exists, else v1's "+config.LegacyPropertyFile+" if it exists")
	f.StringVar(cpuProfile, "cpuprofile", "", "write a CPU profile to this file")
	_ = f.MarkHidden("cpuprofile")
}

// propertyFile settles --config. Not given, the properties come from the
// first of the default file and v1's legacy file that exists, none being
// no properties (as in v1). Given, the file must exist: a mistyped path
// is an error, not a run without the properties meant.
func propertyFile(f *pflag.FlagSet, cfg *config.Config) error {
	if !f.Changed("config") {
		cfg.PropertyFile = ""
		return nil
	}
	if _, err := os.Stat(cfg.PropertyFile); err != nil {
		return fmt.Errorf("invalid --config: %w", err)
	}
	return nil
}

// startCPUProfile profiles the process into path (none when empty) until
// the returned func is called.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func download(ctx context.Context, cfg *config.Config) error {
	// A hangup (the terminal closed) stops the download as Ctrl-C does,
	// so its temp files are removed.
	ctx, stop := signal.NotifyContext(ctx, shutdown.Signals()...)
	defer stop()
	// A reader of stdout or stderr that goes away must give EPIPE, which
	// the status lines ignore, not kill us: in file mode with the temp
	// file left behind or a published file reported as a failure, in
	// stream mode without the download's cleanup.
	signal.Ignore(syscall.SIGPIPE)
	out := core.IO{Data: os.Stdout, Console: os.Stdout}
	if cfg.Stream {
		// stdout carries data: status lines go to stderr.
		out.Console = os.Stderr
		growPipe(os.Stdout)
	}
	if progressbar.IsTerminal(os.Stderr) {
		out.Bar = os.Stderr
	}
	if code := core.Run(ctx, cfg, out); code != 0 {
		return exitError(code)
	}
	return nil
}

// growPipe enlarges stdout's pipe buffer (if it is a pipe) so a stream
// crosses it in fewer, larger writes; failure only costs speed.
func growPipe(f *os.File) {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return
	}
	for size := 1 << 20; size >= 64<<10; size /= 2 {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, size); err == nil {
			return
		}
	}
}

func newServer() *cobra.Command {
	var sc uploader.ServerConfig
	var home string
	var verbose bool
	var readyFD int
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run this host's peer server (normally started by dfget)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if readyFD > 0 {
				sc.Ready = os.NewFile(uintptr(readyFD), "ready")
			}
			return runServer(cmd.Context(), sc, home, verbose)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sc.DataDir, "data", "", "data directory of served files (default <home>/data)")
	f.StringVar(&home, "home", "", "work home")
	f.StringVar(&sc.IP, "ip", "", "IP to listen on")
	f.IntVar(&sc.Port, "port", 0, "port to listen on (default: chosen automatically)")
	f.StringVar(&sc.MetaPath, "meta", "", "meta file recording the port (default <home>/meta/host.meta)")
	f.DurationVar(&sc.ExpireTime, "expiretime", config.DefaultExpireTime, "keep a served file this long after its last access")
	f.DurationVar(&sc.AliveTime, "alivetime", config.DefaultAliveTime, "exit after idling this long (0: never)")
	f.BoolVar(&verbose, "verbose", false, "debug logging")
	f.IntVar(&readyFD, uploader.ReadyFDFlag, 0, "file descriptor to signal readiness on (set by the dfget that starts the server)")
	_ = f.MarkHidden(uploader.ReadyFDFlag)
	return cmd
}

// runServer runs the peer server until a shutdown signal: its paths
// default to those under the work home, and its supernode credentials
// come from the environment the spawning dfget set.
func runServer(ctx context.Context, sc uploader.ServerConfig, home string, verbose bool) error {
	if err := config.ValidateServerTimes(sc.ExpireTime, sc.AliveTime); err != nil {
		return err
	}
	if home == "" {
		h, err := config.DefaultHome()
		if err != nil {
			return err
		}
		home = h
	}
	paths := config.Config{Home: home}
	sc.DataDir = cmp.Or(sc.DataDir, paths.DataDir())
	sc.MetaPath = cmp.Or(sc.MetaPath, paths.MetaPath())
	sc.IP = cmp.Or(sc.IP, "0.0.0.0")
	sc.NodeToken = os.Getenv(uploader.EnvNodeToken)
	for _, f := range strings.Split(os.Getenv(uploader.EnvNodeCACerts), ",") {
		if f != "" {
			sc.NodeCACerts = append(sc.NodeCACerts, f)
		}
	}
	// The peer server reads only logConfig from the properties file.
	props, err := config.ReadProperties("")
	if err != nil {
		return err
	}
	log, closeLog, err := core.NewLogger(paths.LogDir(), "dfserver.log", props.LogConfig, verbose, false)
	if err != nil {
		return err
	}
	defer closeLog()
	l, err := uploader.Listen(sc.IP, sc.Port)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, uploader.ShutdownSignals()...)
	defer stop()
	return uploader.NewServer(sc, log).Run(ctx, l, os.Stdout)
}
