package uploader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// SpawnOptions say which peer server a dfget needs and how to start one.
type SpawnOptions struct {
	IP           string
	Port         int
	Home         string
	MetaPath     string
	DataDir      string
	LogPath      string
	ExpireTime   time.Duration
	AliveTime    time.Duration
	Verbose      bool
	TaskFileName string
	TotalLimit   int64
	// Executable is the dfget binary to run as "server"; empty means
	// os.Executable().
	Executable string
	// NodeToken and NodeCACerts reach the spawned server through its
	// environment (EnvNodeToken, EnvNodeCACerts), not its command line,
	// which any user can read in ps.
	NodeToken   string
	NodeCACerts []string
}

// Environment of a spawned peer server: how it authenticates its stream
// reports to the supernode (see dfget --node-token / --node-cacerts).
const (
	EnvNodeToken   = "DFGET_NODE_TOKEN"
	EnvNodeCACerts = "DFGET_NODE_CACERTS" // comma-separated PEM files
)

// StartOrReuse returns the port of this host's peer server for opts.Home,
// registering opts.TaskFileName with it. It reuses a running server of the
// same version, else spawns one, under an flock on the meta directory so
// concurrent dfgets start exactly one. A server that proves it is ours but
// refuses the check is an error: spawning another for the same home would
// leave it running and take its host.meta, on every run.
func StartOrReuse(ctx context.Context, c *api.Client, o SpawnOptions) (int, error) {
	if p, ok, err := check(ctx, c, o); ok || err != nil {
		return p, err
	}
	metaDir := filepath.Dir(o.MetaPath)
	if err := os.MkdirAll(metaDir, 0o755); err != nil {
		return 0, fmt.Errorf("create meta dir: %w", err)
	}
	unlock, err := lockDir(ctx, filepath.Join(metaDir, "lock"), lockWait)
	if err != nil {
		return 0, err
	}
	defer unlock()
	if p, ok, err := check(ctx, c, o); ok || err != nil {
		return p, err
	}
	exited, ready, err := spawn(o)
	if err != nil {
		return 0, err
	}
	deadline := time.NewTimer(spawnWait)
	defer deadline.Stop()
	// Checks start when the server says it is up. Without that byte (it
	// exited, or lost a race to another that is now running), or when a
	// check fails after it, they go on with growing gaps until the
	// deadline.
	var poll <-chan time.Time // nil until the readiness answer
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-deadline.C:
			return 0, fmt.Errorf("peer server did not come up within %v", spawnWait)
		case <-ready:
			ready = nil
		case <-poll:
		case err := <-exited:
			if p, ok, err := check(ctx, c, o); ok || err != nil {
				return p, err
			}
			return 0, fmt.Errorf("peer server exited at start (see %s): %v", o.LogPath, err)
		}
		if p, ok, err := check(ctx, c, o); ok || err != nil {
			return p, err
		}
		poll = time.After(wait)
	}
}

// spawnWait bounds how long a dfget waits for the server it started.
const spawnWait = 5 * time.Second

// ReadyFDFlag is the hidden "dfget server" flag naming the descriptor on
// which the server tells its spawner it is up (ServerConfig.Ready).
const ReadyFDFlag = "ready-fd"

// check asks the server host.meta names whether it serves this dfget. The
// check proves that the server holds the token host.meta records without
// sending it (api.Client.CheckServer): a listener that cannot, such as
// another user's on the port of a server killed without its cleanup, is
// no server, and StartOrReuse starts one on another port as it would after
// a clean exit. The token then goes with every later control call of c. A
// host.meta without a token (a server of an old version) cannot prove
// anything either. err is set only when the proven server refused the
// check (api.ErrServerRefused).
func check(ctx context.Context, c *api.Client, o SpawnOptions) (port int, ok bool, err error) {
	m := ReadMeta(o.MetaPath)
	p := m.ServicePort
	if p <= 0 || m.Token == "" {
		return 0, false, nil
	}
	c.SetLocalToken(m.Token)
	body, err := c.CheckServer(ctx, o.IP, p, o.TaskFileName, o.DataDir, o.TotalLimit)
	if errors.Is(err, api.ErrServerRefused) {
		return 0, false, fmt.Errorf("peer server on port %d (%s): %w", p, o.MetaPath, err)
	}
	return p, err == nil && body == o.TaskFileName+"@"+version.Version, nil
}

// lockWait bounds the wait for the meta directory's lock. Starting a
// server takes its holder well under a second; one that holds it much
// longer is stopped (a dfget suspended with Ctrl-Z keeps its flock), and
// waiting on it would block every dfget of this home.
const lockWait = 30 * time.Second

// errLockBusy is the meta directory's lock held past lockWait.
var errLockBusy = errors.New("held by another process for too long (a dfget stopped with Ctrl-Z?)")

// lockDir takes an exclusive flock on path, polling so ctx can end the
// wait, for at most wait.
func lockDir(ctx context.Context, path string, wait time.Duration) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, wait, errLockBusy)
	defer cancel()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// spawn starts "dfget server" detached: its own process group, stdin from
// /dev/null and output to its log file, so it outlives this dfget and never
// holds a caller's pipes open. ready gets true once the server says it is
// up (ServerConfig.Ready), false if its end of the pipe closed first.
func spawn(o SpawnOptions) (exited <-chan error, ready <-chan bool, err error) {
	exe := o.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, nil, fmt.Errorf("find dfget executable: %w", err)
		}
	}
	// The pipe's write end is the child's fd 3, its first ExtraFiles.
	args := []string{"server", "--ip", o.IP, "--port", strconv.Itoa(o.Port), "--meta", o.MetaPath,
		"--data", o.DataDir, "--home", o.Home, "--expiretime", o.ExpireTime.String(), "--alivetime", o.AliveTime.String(),
		"--" + ReadyFDFlag, "3"}
	if o.Verbose {
		args = append(args, "--verbose")
	}
	if err := os.MkdirAll(filepath.Dir(o.LogPath), 0o755); err != nil {
		return nil, nil, fmt.Errorf("create log dir: %w", err)
	}
	logf, err := os.OpenFile(o.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open peer server log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("readiness pipe: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Env = append(os.Environ(), EnvNodeToken+"="+o.NodeToken, EnvNodeCACerts+"="+strings.Join(o.NodeCACerts, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	// Only the child keeps the write end: its exit then ends the read.
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, nil, fmt.Errorf("start peer server: %w", err)
	}
	// Reap it if it dies while we live; it is on its own otherwise.
	ex := make(chan error, 1)
	go func() { ex <- cmd.Wait() }()
	rd := make(chan bool, 1)
	// The deadline ends the read (and this goroutine) of a child that
	// neither signals nor exits.
	_ = pr.SetReadDeadline(time.Now().Add(spawnWait))
	go func() {
		defer pr.Close()
		var b [1]byte
		n, _ := pr.Read(b[:])
		rd <- n == 1
	}()
	return ex, rd, nil
}
