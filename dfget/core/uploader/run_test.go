package uploader

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
)

// startRun runs s on a new loopback port until cancel; done gets Run's
// result.
func startRun(t *testing.T, s *Server) (port int, cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	ended := make(chan struct{})
	go func() { ch <- s.Run(ctx, l, io.Discard); close(ended) }()
	// Run writes its meta file as it ends: the test's temporary directory
	// may go only after that.
	t.Cleanup(func() {
		cancel()
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Error("the server's Run did not end within 30 s of its cancel")
		}
	})
	return l.Addr().(*net.TCPAddr).Port, cancel, ch
}

// keptRunning waits until n idle checks, all made after AliveTime of
// quiet, found s still in use. It fails when Run ends instead, or when
// the checks do not come.
func keptRunning(s *Server, done <-chan error, n int64) error {
	quiet := time.Unix(0, s.lastActive.Load()).Add(s.cfg.AliveTime)
	time.Sleep(time.Until(quiet)) // a lower bound: the checks below come later
	want := s.idleChecks.Load() + n
	deadline := time.After(30 * time.Second)
	for s.idleChecks.Load() < want {
		select {
		case err := <-done:
			return fmt.Errorf("the server idled out (Run: %v) while it should have kept running", err)
		case <-deadline:
			return fmt.Errorf("%d idle checks in 30 s, want %d", s.idleChecks.Load(), want)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// startSleeper starts a process that stands for a dfget; the test kills
// it to play the dfget's death, else cleanup does.
func startSleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// waitMetaPort waits until the meta file names port.
func waitMetaPort(t *testing.T, meta string, port int) {
	t.Helper()
	for i := 0; ReadMeta(meta).ServicePort != port; i++ {
		if i > 200 {
			t.Fatal("the server did not write its meta")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A server exiting with nobody else on its port leaves the meta empty and
// removes its pid file.
func TestExitClearsOwnMetaAndPid(t *testing.T) {
	dir := t.TempDir()
	meta := filepath.Join(dir, "meta", "host.meta")
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: filepath.Join(dir, "data"), MetaPath: meta,
		ExpireTime: time.Minute, AliveTime: time.Hour}, quietLog())
	port, cancel, done := startRun(t, s)
	waitMetaPort(t, meta, port)
	if b, err := os.ReadFile(PidPath(meta)); err != nil || string(b) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("pid file %q, %v", b, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := ReadMeta(meta); m != (types.HostMeta{}) {
		t.Errorf("meta at exit: %+v", m)
	}
	if _, err := os.Stat(PidPath(meta)); !os.IsNotExist(err) {
		t.Errorf("pid file at exit: %v", err)
	}
}

// A server still cleaning up (service-down reports to a slow supernode)
// when a new server took its freed port must leave the new one's meta and
// pid file alone: the port alone does not say whose they are.
func TestExitKeepsTheNextServersMeta(t *testing.T) {
	dir := t.TempDir()
	meta := filepath.Join(dir, "meta", "host.meta")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
		_, _ = io.WriteString(w, `{"code":`+strconv.Itoa(types.CodeGetPeerDown)+`}`)
	}))
	defer slow.Close()
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: filepath.Join(dir, "data"), MetaPath: meta,
		ExpireTime: time.Minute, AliveTime: time.Hour}, quietLog())
	port, cancel, done := startRun(t, s)
	waitMetaPort(t, meta, port)
	if w := do(t, s.Handler(), "GET", "/client/finish?taskFileName=f&taskID=T&cid=C&superNode="+slow.Listener.Addr().String(),
		"127.0.0.1:1", nil, nil); w.Code != 200 {
		t.Fatal(w.Code)
	}
	cancel()
	var l2 net.Listener
	for i := 0; i < 100 && l2 == nil; i++ {
		l2, _ = net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		time.Sleep(5 * time.Millisecond)
	}
	if l2 == nil {
		t.Fatal("port not freed")
	}
	defer l2.Close()
	// Server B (another process) takes the port while A reports.
	pidB := strconv.Itoa(os.Getpid() + 1)
	if err := WriteMeta(meta, types.HostMeta{ServicePort: port, Token: "server-B"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(PidPath(meta), []byte(pidB), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := ReadMeta(meta); m.Token != "server-B" || m.ServicePort != port {
		t.Errorf("the exiting server reset the meta of the server now on its port: %+v", m)
	}
	if b, err := os.ReadFile(PidPath(meta)); err != nil || string(b) != pidB {
		t.Errorf("the exiting server removed the next server's pid file: %q, %v", b, err)
	}
}

// ageTask makes task name's last check d ago.
func ageTask(t *testing.T, s *Server, name string, d time.Duration) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	tk := s.tasks[name]
	if tk == nil {
		t.Fatalf("task %s not registered", name)
	}
	tk.accessTime = time.Now().Add(-d)
}

// checkTask registers task file name as a dfget does, with hdr's extra
// headers, and gives it a service file.
func checkTask(t *testing.T, s *Server, name string, hdr map[string]string) string {
	t.Helper()
	h := map[string]string{"dataDir": s.cfg.DataDir}
	for k, v := range hdr {
		h[k] = v
	}
	if w := do(t, s.Handler(), "GET", "/check/"+name, "127.0.0.1:1", h, nil); w.Code != 200 {
		t.Fatalf("check %s: %d %s", name, w.Code, w.Body)
	}
	f := filepath.Join(s.cfg.DataDir, name+ServiceSuffix)
	if err := os.WriteFile(f, []byte("half a download"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// A server whose alive time is shorter than a downloading dfget's check
// interval (one spawned by "dfget --alivetime 20s", used by a default
// dfget checking every 30 s) stays while the download is unfinished, and
// keeps its file: deleting it failed the download at publish.
func TestIdleServerKeepsUnfinishedDownload(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: filepath.Join(dir, "data"),
		MetaPath: filepath.Join(dir, "meta", "host.meta"), ExpireTime: time.Minute, AliveTime: 300 * time.Millisecond}, quietLog())
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.idleEvery = 20 * time.Millisecond
	f := checkTask(t, s, "dl", nil) // a dfget that does not say its process
	_, _, done := startRun(t, s)
	if err := keptRunning(s, done, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f); err != nil {
		t.Errorf("the unfinished download's file: %v", err)
	}
}

// A dfget that says its process keeps its unfinished task, and the server,
// for as long as it runs, checks or not (it checks nothing while it hashes
// and publishes the file); once it is gone the server idles out.
func TestIdleServerWaitsForDfgetProcess(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: filepath.Join(dir, "data"),
		MetaPath: filepath.Join(dir, "meta", "host.meta"), ExpireTime: 100 * time.Millisecond,
		AliveTime: 300 * time.Millisecond}, quietLog())
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dfget := startSleeper(t)
	f := checkTask(t, s, "dl", map[string]string{"dfgetPid": strconv.Itoa(dfget.Process.Pid), "checkEvery": "1000"})
	ageTask(t, s, "dl", time.Hour)
	_, _, done := startRun(t, s)
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the server idled out while the downloading dfget runs")
	default:
	}
	if _, err := os.Stat(f); err != nil {
		t.Fatalf("the unfinished download's file: %v", err)
	}
	_ = dfget.Process.Kill()
	_ = dfget.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not idle out after the dfget died")
	}
	if _, err := os.Stat(f); !os.IsNotExist(err) {
		t.Errorf("a dead dfget's unfinished file kept at exit: %v", err)
	}
}

// GC (and the final one at exit) keeps the file of an unfinished task
// while its dfget runs, or, when the server cannot watch the dfget, while
// it checks in: within four of its announced intervals and at least
// minLease, however short --expiretime and --alivetime are. Tasks of dead
// dfgets, and of live ones that removed their file, go.
func TestGCKeepsDownloadsInProgress(t *testing.T) {
	s, _ := newTestServer(t)
	s.cfg.ExpireTime, s.cfg.AliveTime = 10*time.Millisecond, 10*time.Millisecond
	dead := startSleeper(t)
	files := map[string]string{}
	for name, c := range map[string]struct {
		hdr map[string]string
		age time.Duration
	}{
		"quiet":       {nil, time.Second},
		"stale":       {nil, minLease + time.Second},
		"slow":        {map[string]string{"checkEvery": "600000"}, 30 * time.Minute},
		"live":        {map[string]string{"dfgetPid": strconv.Itoa(os.Getpid())}, time.Hour},
		"live-nofile": {map[string]string{"dfgetPid": strconv.Itoa(os.Getpid())}, time.Hour},
		"dead":        {map[string]string{"dfgetPid": strconv.Itoa(dead.Process.Pid)}, time.Second},
	} {
		files[name] = checkTask(t, s, name, c.hdr)
		ageTask(t, s, name, c.age)
	}
	_ = os.Remove(files["live-nofile"])
	_ = dead.Process.Kill()
	_ = dead.Wait()
	s.gc(context.Background(), false)
	for name, keep := range map[string]bool{"quiet": true, "stale": false, "slow": true, "live": true, "dead": false} {
		if _, err := os.Stat(files[name]); (err == nil) != keep {
			t.Errorf("gc: task %s's file kept %v, want %v", name, err == nil, keep)
		}
	}
	s.mu.Lock()
	_, forgot := s.tasks["live-nofile"]
	s.mu.Unlock()
	if forgot {
		t.Error("gc kept the task of a live dfget that removed its file an hour ago")
	}
	s.gc(context.Background(), true)
	for _, name := range []string{"quiet", "slow", "live"} {
		if _, err := os.Stat(files[name]); err != nil {
			t.Errorf("final gc: task %s's file: %v", name, err)
		}
	}
}

// A dfget's /check tells its server its process and check interval.
func TestCheckTellsDfgetProcess(t *testing.T) {
	s, dir := newTestServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	c := api.New()
	c.SetLocalToken(testToken)
	c.SetLocalOwner(os.Getpid(), 7*time.Second)
	if _, err := c.CheckServer(context.Background(), "127.0.0.1", port, "dl", dir, 0); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	tk := *s.tasks["dl"]
	s.mu.Unlock()
	if tk.owner != procOf(os.Getpid()) || tk.checkEvery != 7*time.Second {
		t.Errorf("task registered with owner %+v, check interval %v", tk.owner, tk.checkEvery)
	}
}
