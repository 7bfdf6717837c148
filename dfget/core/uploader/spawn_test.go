package uploader

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Run signals Ready only once host.meta names the server: the spawning
// dfget checks the server as soon as the byte arrives.
func TestServerSignalsReadyAfterMeta(t *testing.T) {
	dir := t.TempDir()
	meta := filepath.Join(dir, "meta", "host.meta")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: filepath.Join(dir, "data"), MetaPath: meta,
		ExpireTime: time.Minute, AliveTime: time.Hour, Ready: pw}, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, l, io.Discard) }()
	defer func() { cancel(); <-done }()
	_ = pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(pr) // one byte, then Run closes its end
	if err != nil || string(b) != "1" {
		t.Fatalf("readiness: %q, %v; want \"1\" and the end closed", b, err)
	}
	if got, want := ReadMeta(meta), l.Addr().(*net.TCPAddr).Port; got.ServicePort != want || got.Token != testToken {
		t.Fatalf("host.meta at the readiness byte: %+v, want port %d and the token", got, want)
	}
}

// spawn hands the child its end of the readiness pipe as fd 3 (named by
// --ready-fd): a byte there is readiness, the end closing without one
// (the child exited, or never knew the flag) is not.
func TestSpawnReadiness(t *testing.T) {
	for _, c := range []struct {
		name, script string
		want         bool
	}{
		{"signals", `case " $* " in *" --ready-fd 3 "*) ;; *) exit 3;; esac; printf 1 >&3; exec 3>&-; echo $$ > "$0.pid"; exec sleep 30`, true},
		{"exits", `exit 1`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			exe := filepath.Join(dir, "fake-dfget")
			if err := os.WriteFile(exe, []byte("#!/bin/sh\n"+c.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			exited, ready, err := spawn(SpawnOptions{IP: "127.0.0.1", MetaPath: filepath.Join(dir, "host.meta"), DataDir: dir,
				Home: dir, LogPath: filepath.Join(dir, "server.log"), Executable: exe})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-ready:
				if got != c.want {
					log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
					t.Fatalf("ready %v, want %v (log %q)", got, c.want, log)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no readiness answer in 10 s")
			}
			if c.want {
				select {
				case err := <-exited:
					t.Fatalf("the signalling child exited: %v", err)
				default:
				}
				// The script's pid file comes right after its byte.
				var pid int
				for i := 0; i < 500 && pid == 0; i++ {
					b, _ := os.ReadFile(exe + ".pid")
					pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
					time.Sleep(10 * time.Millisecond)
				}
				if pid <= 0 {
					t.Fatal("no pid from the fake server")
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
				<-exited
			}
		})
	}
}
