package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envRunDfget makes the test binary run as dfget (TestMain), so a test can
// signal a real dfget process or give it a broken stdout.
const envRunDfget = "DFGET_MAIN_TEST_RUN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunDfget) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// dfgetCmd is a dfget process downloading url to out from the source
// (--pattern source: no supernode, and no peer server to spawn, which
// would be this test binary).
func dfgetCmd(t *testing.T, ctx context.Context, url, out string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe, "-u", url, "-o", out, "--pattern", "source", "--home", t.TempDir(),
		"--config", "/dev/null", "--node", "127.0.0.1:1")
	cmd.Env = append(os.Environ(), envRunDfget+"=1")
	return cmd
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A hangup (the terminal closed) mid-download stops dfget as Ctrl-C does:
// its temp file is removed and it exits with a failure, not killed by the
// signal with the temp file left in the user's directory.
func TestHangupMidDownloadLeavesNothing(t *testing.T) {
	if signal.Ignored(syscall.SIGHUP) {
		t.Skip("SIGHUP is ignored (nohup): dfget keeps ignoring it")
	}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10000000")
		_, _ = w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer origin.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := dfgetCmd(t, ctx, origin.URL+"/f", filepath.Join(dir, "out"))
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the download never started")
	}
	// The first bytes are out: the temp file exists.
	if len(dirEntries(t, dir)) == 0 {
		t.Fatal("no temp file while downloading")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code <= 0 {
		t.Errorf("exit after SIGHUP: %v (code %d), want a failure exit\n%s", err, code, stdout.String())
	}
	if left := dirEntries(t, dir); len(left) > 0 {
		t.Errorf("left in the output directory after SIGHUP: %v", left)
	}
}

// In file mode, a reader of stdout that went away (dfget ... | head) costs
// only the status lines: the download completes and exits 0, not killed
// by SIGPIPE.
func TestBrokenStdoutFileMode(t *testing.T) {
	const body = "0123456789"
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f", time.Time{}, strings.NewReader(body))
	}))
	defer origin.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	cmd := dfgetCmd(t, ctx, origin.URL+"/f", out)
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("dfget with a closed stdout: %v, want exit 0", err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != body {
		t.Errorf("output %q, %v", b, err)
	}
	if left := dirEntries(t, dir); len(left) != 1 {
		t.Errorf("output directory: %v", left)
	}
}

// A --config given on the command line must exist (not given, a missing
// default file is no properties, as in v1).
func TestExplicitMissingConfigRefused(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	code := run([]string{"-u", "http://127.0.0.1:1/f", "-o", out, "--pattern", "source", "--home", t.TempDir(),
		"--config", filepath.Join(dir, "missing.yml")})
	if code != 1 {
		t.Errorf("--config of a missing file: exit %d, want 1", code)
	}
}

// dfget server refuses a negative --alivetime or --expiretime rather
// than starting with it.
func TestServerRefusesNegativeTimes(t *testing.T) {
	for _, bad := range [][]string{{"--alivetime", "-1s"}, {"--expiretime", "-5s", "--alivetime", "1s"}} {
		done := make(chan int, 1)
		args := append([]string{"server", "--home", t.TempDir(), "--ip", "127.0.0.1"}, bad...)
		go func() { done <- run(args) }()
		select {
		case code := <-done:
			if code != 1 {
				t.Errorf("server %s %s: exit %d, want 1", bad[0], bad[1], code)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server %s %s: started and still running", bad[0], bad[1])
		}
	}
}
