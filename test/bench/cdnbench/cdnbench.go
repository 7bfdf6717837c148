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
	api, err := freePort()
	if err != nil {
		return 0, err
	}
	dl, err := freePort()
	if err != nil {
		return 0, err
	}
	logf, err := os.Create(filepath.Join(home, "supernode.out"))
	if err != nil {
		return 0, fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(supernodeBin, "--home-dir", filepath.Join(home, "sn"), "--port", strconv.Itoa(api),
		"--download-port", strconv.Itoa(dl), "--advertise-ip", "127.0.0.1", "--config", "/dev/null")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start supernode: %w", err)
	}
	exited := make(chan error, 1)
	// done, not exited, tells the deferred stop that the process ended:
	// the loops below may already have taken exited's value, and waiting
	// on it again would hang forever.
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(api)
	if err := waitPing(ctx, base, exited); err != nil {
		return 0, err
	}
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
		case err := <-exited:
			return 0, fmt.Errorf("supernode exited: %v", err)
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

func waitPing(ctx context.Context, base string, exited <-chan error) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("supernode exited at start: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("supernode at %s not ready", base)
}
