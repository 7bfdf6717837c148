package uploader

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

func TestProcAlive(t *testing.T) {
	if !(proc{}).alive() {
		t.Error("an unknown process counts as gone")
	}
	me := procOf(os.Getpid())
	if me.pid == 0 || !me.alive() {
		t.Fatalf("this process: %+v alive %v", me, me.alive())
	}
	if (proc{pid: me.pid, start: me.start + 1}).alive() {
		t.Error("a recycled PID (other start time) counts as alive")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child := procOf(cmd.Process.Pid)
	if !child.alive() {
		t.Fatal("running child counts as gone")
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for child.alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // killed, not yet reaped: a zombie
	}
	if child.alive() {
		t.Error("killed child (zombie) counts as alive")
	}
	_ = cmd.Wait()
	if child.alive() {
		t.Error("reaped child counts as alive")
	}
}

// A streaming dfget killed mid-stream never drops its cache; the server
// does once the process is gone, reporting the pieces as evicted, so it
// can idle out and the supernode stops sending peers to it.
func TestOrphanStreamDropped(t *testing.T) {
	fs := &fakeSupernode{}
	sn := httptest.NewServer(fs)
	defer sn.Close()
	s, _ := newTestServer(t)
	h := s.Handler()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for _, st := range []struct{ name, pid string }{{"dead", strconv.Itoa(cmd.Process.Pid)}, {"live", strconv.Itoa(os.Getpid())}} {
		w := do(t, h, "POST", "/stream/task", "127.0.0.1:1", map[string]string{"taskFileName": st.name, "taskID": "T",
			"cid": "C", "superNode": sn.Listener.Addr().String(), "pieceSize": strconv.Itoa(testPieceSize), "windowSize": "2",
			"dfgetPid": st.pid}, nil)
		if w.Code != 200 {
			t.Fatalf("stream task: %d %s", w.Code, w.Body)
		}
		if w := do(t, h, "POST", "/stream/piece", "127.0.0.1:1", map[string]string{"taskFileName": st.name, "pieceNum": "0",
			"pieceSize": strconv.Itoa(testPieceSize)}, piece.Wrap(nil, []byte("x"), testPieceSize)); w.Code != 200 {
			t.Fatalf("push: %d", w.Code)
		}
	}
	// Both "cached" reports must be out before the drop: a queued one
	// is cancelled by the eviction, and then no DELETE is sent either.
	for i := 0; len(fs.snapshot()) < 2; i++ {
		if i > 500 {
			t.Fatalf("cached reports %v, want two", fs.snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.dropOrphanStreams()
	s.mu.Lock()
	n := len(s.streams)
	s.mu.Unlock()
	if n != 2 {
		t.Fatalf("streams of running dfgets dropped: %d left", n)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	s.dropOrphanStreams()
	s.mu.Lock()
	_, dead := s.streams["dead"]
	_, live := s.streams["live"]
	s.mu.Unlock()
	if dead || !live {
		t.Fatalf("after the kill: dead stream kept %v, live stream kept %v", dead, live)
	}
	r0 := piece.Range(0, testPieceSize, -1)
	deletes := 0
	for _, c := range fs.snapshot() {
		if c == "DELETE "+r0 {
			deletes++
		}
	}
	if deletes != 1 {
		t.Errorf("eviction reports %v, want one DELETE for the dead stream's piece", fs.snapshot())
	}
}
