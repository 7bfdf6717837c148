package uploader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// candidatePorts are the ports tried when none is given: Dragonfly 1.x's
// time-derived base, so concurrent hosts spread, plus a few neighbours.
func candidatePorts(now time.Time, n int) []int {
	base := int((now.Unix()/300)%50000) + 15000
	out := make([]int, 0, n)
	for i := 0; i < n; i++ {
		p := base + i
		if p > 65000 {
			p -= 50000
		}
		out = append(out, p)
	}
	return out
}

// Listen binds the peer server's port on ip: the given port, or the first
// free candidate.
func Listen(ip string, port int) (net.Listener, error) {
	if port != 0 {
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("listen on %s:%d: %w", ip, port, err)
		}
		return l, nil
	}
	var last error
	for _, p := range candidatePorts(time.Now(), 30) {
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err == nil {
			return l, nil
		}
		last = err
	}
	return nil, fmt.Errorf("no free peer server port on %s: %w", ip, last)
}

// ReadMeta reads <home>/meta/host.meta; a missing or bad file is port 0.
func ReadMeta(path string) types.HostMeta {
	var m types.HostMeta
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// WriteMeta replaces the meta file atomically, readable by its owner only
// (it holds the server's token).
func WriteMeta(path string, m types.HostMeta) error {
	b, _ := json.Marshal(m)
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	_ = os.Remove(tmp) // a leftover would keep its old, wider mode
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write meta: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write meta: %w", err)
	}
	return nil
}

// PidPath is where the server records its process id, beside host.meta.
func PidPath(metaPath string) string { return filepath.Join(filepath.Dir(metaPath), "server.pid") }

// Run serves on l until ctx ends or the server idles for AliveTime, then
// shuts down: reports service-down for finished tasks, deletes their files,
// and clears the meta port. It prints the v1 startup line to out.
func (s *Server) Run(ctx context.Context, l net.Listener, out io.Writer) error {
	port := l.Addr().(*net.TCPAddr).Port
	s.cfg.Port = port
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if s.cfg.MetaPath != "" {
		if err := os.MkdirAll(filepath.Dir(s.cfg.MetaPath), 0o755); err != nil {
			return fmt.Errorf("create meta dir: %w", err)
		}
		if err := WriteMeta(s.cfg.MetaPath, types.HostMeta{ServicePort: port, Token: s.cfg.Token}); err != nil {
			return err
		}
		_ = os.WriteFile(PidPath(s.cfg.MetaPath), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	fmt.Fprintf(out, "dfget uploader server port is %d\n", port)
	// Timeouts bound what a slow or silent client can hold: headers 10 s,
	// a pushed stream piece 1 min, one piece upload (rate-limited by
	// totalLimit) 10 min.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()

	gcEvery := 15 * time.Second
	if s.cfg.ExpireTime > 0 && s.cfg.ExpireTime/2 < gcEvery {
		gcEvery = max(s.cfg.ExpireTime/2, time.Second)
	}
	gc := time.NewTicker(gcEvery)
	defer gc.Stop()
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	// A drop waits for the eviction reports to the supernode (up to the
	// notes' grace): it runs beside the loop, one at a time, so the loop
	// still ends at once on a signal. Reports still unsent when the
	// process exits are lost; they are best effort (see notify).
	var dropping atomic.Bool
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			break loop
		case <-gc.C:
			s.gc(ctx, false)
		case <-idle.C:
			if dropping.CompareAndSwap(false, true) {
				go func() { defer dropping.Store(false); s.dropOrphanStreams() }()
			}
			if s.idle() {
				s.log.Infof("idle for %v, exiting", s.cfg.AliveTime)
				break loop
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	s.gc(sctx, true)
	s.clearMeta(port)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// clearMeta tells later dfgets this server is gone, unless another server
// took over meanwhile: the final cleanup can take seconds (service-down
// reports), and a server started then on the freed port, found by the
// same port in host.meta, must keep its meta (token) and pid file.
func (s *Server) clearMeta(port int) {
	if s.cfg.MetaPath == "" {
		return
	}
	if m := ReadMeta(s.cfg.MetaPath); m.ServicePort == port && m.Token == s.cfg.Token {
		_ = WriteMeta(s.cfg.MetaPath, types.HostMeta{})
	}
	pidPath := PidPath(s.cfg.MetaPath)
	if b, err := os.ReadFile(pidPath); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(pidPath)
	}
}

// idle is true when nothing used the server for AliveTime and no request or
// stream is in progress.
func (s *Server) idle() bool {
	if s.cfg.AliveTime <= 0 || s.inflight.Load() > 0 {
		return false
	}
	s.mu.Lock()
	streams := len(s.streams)
	s.mu.Unlock()
	last := time.Unix(0, s.lastActive.Load())
	return streams == 0 && time.Since(last) > s.cfg.AliveTime
}

// gc removes expired finished task files (all known ones when final), and
// files in the data dir no task claims that are older than the expire time.
func (s *Server) gc(ctx context.Context, final bool) {
	now := time.Now()
	var expired []*task
	s.mu.Lock()
	for name, t := range s.tasks {
		if final {
			expired = append(expired, t)
			delete(s.tasks, name)
			continue
		}
		if !t.finished {
			// A dfget that vanished without finishing leaves a task that
			// is only touched by its keepalive; forget it when stale.
			if now.Sub(t.accessTime) > s.cfg.ExpireTime+s.cfg.AliveTime {
				expired = append(expired, t)
				delete(s.tasks, name)
			}
			continue
		}
		last := t.accessTime
		if st, err := os.Stat(filepath.Join(s.cfg.DataDir, name+ServiceSuffix)); err == nil && st.ModTime().After(last) {
			last = st.ModTime()
		}
		if now.Sub(last) > s.cfg.ExpireTime {
			expired = append(expired, t)
			delete(s.tasks, name)
		}
	}
	known := map[string]bool{}
	for name := range s.tasks {
		known[name+ServiceSuffix] = true
	}
	s.mu.Unlock()
	for _, t := range expired {
		if t.superNode != "" && t.taskID != "" {
			if err := t.node.ReportServiceDown(ctx, t.superNode, t.taskID, t.cid); err != nil {
				s.log.Debugf("service down %s: %v", t.name, err)
			}
		}
		_ = os.Remove(filepath.Join(s.cfg.DataDir, t.name+ServiceSuffix))
		s.log.Infof("removed task file %s", t.name)
	}
	if final {
		return
	}
	ents, err := os.ReadDir(s.cfg.DataDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if known[e.Name()] || e.IsDir() || !strings.HasSuffix(e.Name(), ServiceSuffix) {
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > s.cfg.ExpireTime+s.cfg.AliveTime {
			_ = os.Remove(filepath.Join(s.cfg.DataDir, e.Name()))
		}
	}
}

// ShutdownSignals are the signals that end a peer server cleanly.
func ShutdownSignals() []os.Signal {
	return []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM}
}
