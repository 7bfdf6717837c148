package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/test/procmem"
)

// Exec describes a program to run on a host.
type Exec struct {
	// Label names the log file (<logdir>/<host>-<label>.log); it must be
	// unique within the host.
	Label string
	Path  string
	Args  []string
	// Stdout receives standard output instead of the log file.
	Stdout io.Writer
	// Env is added to the harness's environment.
	Env []string
	// Dir is the working directory; the host directory when empty.
	Dir string
}

// Proc is a process started on a host.
type Proc struct {
	Host    *Host
	Label   string
	LogPath string
	cmd     *exec.Cmd
	log     *os.File
	start   time.Time
	done    chan struct{}

	mu    sync.Mutex
	end   time.Time
	err   error
	state *os.ProcessState
	peak  int64 // VmHWM at exit (procmem.Watch)
}

func startProc(ctx context.Context, h *Host, e Exec) (*Proc, error) {
	if e.Label == "" || e.Path == "" {
		return nil, errors.New("exec needs a label and a path")
	}
	logPath := filepath.Join(h.c.LogDir(), h.Name+"-"+e.Label+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	path, args := h.wrap(e.Path, e.Args)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = e.Dir
	if cmd.Dir == "" {
		cmd.Dir = h.dir
	}
	cmd.Env = append(os.Environ(), e.Env...)
	cmd.Stdout = lf
	if e.Stdout != nil {
		cmd.Stdout = e.Stdout
	}
	cmd.Stderr = lf
	// Own process group, so that stopping it reaches its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(lf, "+ %s %s\n", e.Path, strings.Join(e.Args, " "))
	p := &Proc{Host: h, Label: e.Label, LogPath: logPath, cmd: cmd, log: lf, done: make(chan struct{})}
	if err := h.c.track(p); err != nil {
		lf.Close()
		return nil, err
	}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		close(p.done)
		return nil, fmt.Errorf("start %s on %s: %w", e.Label, h.Name, err)
	}
	stopWatch := procmem.Watch(cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		peak := stopWatch()
		p.mu.Lock()
		p.end = time.Now()
		p.err = err
		p.state = cmd.ProcessState
		p.peak = peak
		p.mu.Unlock()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (in namespace mode, `ip netns exec` execs the
// program in place, so it is the program's pid).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for exit and returns an error for a non-zero status that
// carries the end of the log.
func (p *Proc) Wait() error {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("%s on %s: %w\n%s", p.Label, p.Host.Name, p.err, tail(p.LogPath, 2000))
	}
	return nil
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Duration is the run time so far, or until exit.
func (p *Proc) Duration() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.end.IsZero() {
		return time.Since(p.start)
	}
	return p.end.Sub(p.start)
}

// MaxRSS is the peak resident set size in bytes (VmHWM sampled every
// procmem.SampleEvery while it ran, not rusage: see package procmem); 0
// before exit.
func (p *Proc) MaxRSS() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// CPU is the user plus system time of the exited process (rusage); 0
// before exit.
func (p *Proc) CPU() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return 0
	}
	return p.state.UserTime() + p.state.SystemTime()
}

// PeakRSS reads the running process's peak resident set size (VmHWM) in
// bytes.
func (p *Proc) PeakRSS() (int64, error) {
	v, err := procmem.PeakRSS(p.Pid())
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.Label, err)
	}
	return v, nil
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
	}
}

// tail returns at most the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(bytes.TrimSpace(b))
}
