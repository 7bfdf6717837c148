package uploader

import (
	"context"
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
)

// startRun runs s on a new loopback port until cancel; done gets Run's
// result.
func startRun(t *testing.T, s *Server) (port int, cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- s.Run(ctx, l, io.Discard) }()
	return l.Addr().(*net.TCPAddr).Port, cancel, ch
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
