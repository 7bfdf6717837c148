// Package cdnbench measures how long a real supernode takes to bring a file
// from an origin into its CDN cache: register as a client, then poll
// /api/v1/tasks/{id} until cdnStatus is SUCCESS.
package cdnbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// MeasureCDN starts supernodeBin with a fresh home directory on free
// loopback ports, registers originURL and returns the time from the
// registration request to cdnStatus SUCCESS. The supernode is stopped before
// returning and its home directory removed.
func MeasureCDN(ctx context.Context, originURL, supernodeBin string) (time.Duration, error) {
	home, err := os.MkdirTemp("", "cdnbench-")
	if err != nil {
		return 0, fmt.Errorf("temp home: %w", err)
	}
	defer os.RemoveAll(home)
	sn, err := StartSupernode(ctx, supernodeBin, filepath.Join(home, "sn"))
	if err != nil {
		return 0, err
	}
	defer sn.Stop()
	base := "http://" + sn.Addr
	body, _ := json.Marshal(types.RegisterRequest{RawURL: originURL, TaskURL: originURL, CID: "127.0.0.1-cdnbench-0.000",
		IP: "127.0.0.1", HostName: "cdnbench", Port: 0, Path: "/peer/file/cdnbench", SuperNodeIP: "127.0.0.1"})
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/peer/registry", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("register: %w", err)
	}
	var reg struct {
		Code int                        `json:"code"`
		Data types.RegisterResponseData `json:"data"`
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.Unmarshal(rb, &reg) != nil || reg.Code != types.CodeSuccess {
		return 0, fmt.Errorf("register: HTTP %d %s", resp.StatusCode, rb)
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/tasks/"+reg.Data.TaskID, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("task info: %w", err)
		}
		var ti types.TaskInfo
		err = json.NewDecoder(resp.Body).Decode(&ti)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("task info: %w", err)
		}
		switch ti.CdnStatus {
		case types.CDNStatusSuccess:
			return time.Since(start), nil
		case types.CDNStatusFailed, types.CDNStatusSourceError:
			return 0, fmt.Errorf("cdn of %s ended %s", originURL, ti.CdnStatus)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-sn.Exited():
			return 0, fmt.Errorf("supernode exited: %v", sn.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Supernode is a bench supernode listening on free loopback ports.
type Supernode struct {
	// Addr is the API address, host:port.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the process's exit error, set before done closes
}

// StartSupernode starts bin with home as its home directory on free loopback
// ports, its output in home/supernode.out, and waits until /_ping answers.
// dfgetbench uses it too, so both benches run the supernode the same way.
func StartSupernode(ctx context.Context, bin, home string) (*Supernode, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	dl, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("supernode home: %w", err)
	}
	logf, err := os.Create(filepath.Join(home, "supernode.out"))
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(bin, "--home-dir", home, "--port", strconv.Itoa(api),
		"--download-port", strconv.Itoa(dl), "--advertise-ip", "127.0.0.1", "--config", "/dev/null",
		// The origins of the benchmarks are on loopback, which a supernode
		// refuses unless told.
		"--source-allow", "127.0.0.0/8")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start supernode: %w", err)
	}
	s := &Supernode{Addr: "127.0.0.1:" + strconv.Itoa(api), cmd: cmd, done: make(chan struct{})}
	// Only this goroutine waits on the process; everyone else watches done,
	// which can be read any number of times (a value channel read once by a
	// poll loop once left Stop waiting forever).
	go func() { s.err = cmd.Wait(); logf.Close(); close(s.done) }()
	if err := s.waitPing(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Pid is the supernode's process ID.
func (s *Supernode) Pid() int { return s.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (s *Supernode) Exited() <-chan struct{} { return s.done }

// Err is the process's exit error once Exited is closed.
func (s *Supernode) Err() error { return s.err }

// Stop sends SIGTERM, then SIGKILL after 10 s, and waits for the exit.
func (s *Supernode) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *Supernode) waitPing(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + s.Addr + "/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return fmt.Errorf("supernode exited at start: %v", s.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("supernode at %s not ready", s.Addr)
}
