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
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/shutdown"
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
// shuts down: reports service-down for finished tasks, deletes the task
// files but those of downloads still in progress, and clears the meta
// port. It prints the v1 startup line to out.
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
	if s.cfg.Ready != nil {
		// l already queues connections: the spawner's check is answered
		// once Serve below accepts them.
		_, _ = s.cfg.Ready.Write([]byte{'1'})
		_ = s.cfg.Ready.Close()
	}
	// Timeouts bound what a slow or silent client can hold: headers 10 s,
	// a pushed stream piece 1 min. A piece upload has its own, shorter
	// write deadline (uploadWriter); the 10 min here is only a backstop.
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
	idle := time.NewTicker(s.idleEvery)
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
			s.idleChecks.Add(1)
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

// idle is true when nothing used the server for AliveTime, no request or
// stream is in progress and no dfget is still downloading a task file
// (a download nobody fetches from only checks in now and then).
func (s *Server) idle() bool {
	if s.cfg.AliveTime <= 0 || s.inflight.Load() > 0 {
		return false
	}
	s.mu.Lock()
	streams := len(s.streams)
	var unfinished []task
	for _, t := range s.tasks {
		if !t.finished {
			unfinished = append(unfinished, *t)
		}
	}
	s.mu.Unlock()
	last := time.Unix(0, s.lastActive.Load())
	if streams > 0 || time.Since(last) <= s.cfg.AliveTime {
		return false
	}
	now := time.Now()
	for i := range unfinished {
		if s.downloading(&unfinished[i], now) {
			return false
		}
	}
	return true
}

// minLease is the least time an unfinished task whose dfget's process the
// server cannot watch is kept after its last /check: four of a default
// dfget's 30 s intervals, so late or lost checks never cost a download
// its file.
const minLease = 2 * time.Minute

// maxCheckEvery bounds the interval a dfget may announce, and so the
// lease of its task.
const maxCheckEvery = time.Hour

// ownerOf reads who registers a task at /check: the dfget's process and
// how often it checks again; zero values when it does not say (a v1
// dfget) or its process cannot be seen (another PID namespace).
func ownerOf(h http.Header) (proc, time.Duration) {
	var owner proc
	if pid, err := strconv.Atoi(h.Get(api.HeaderDfgetPID)); err == nil && pid > 0 {
		owner = procOf(pid)
	}
	var every time.Duration
	if ms, err := strconv.ParseInt(h.Get(api.HeaderCheckEvery), 10, 64); err == nil && ms > 0 {
		every = time.Duration(min(ms, maxCheckEvery.Milliseconds())) * time.Millisecond
	}
	return owner, every
}

// claim records what a /check of t said about its dfget; what it did not
// say stays as an earlier check said.
func (t *task) claim(owner proc, every time.Duration) {
	if owner.pid != 0 {
		t.owner = owner
	}
	if every > 0 {
		t.checkEvery = every
	}
}

// lease is how long after its last /check an unfinished task is kept when
// its dfget's process says nothing: four of the dfget's check intervals,
// at least minLease, and never less than the expire time plus the alive
// time, as unfinished tasks were kept before dfgets checked in.
func (s *Server) lease(t *task) time.Duration {
	return max(4*t.checkEvery, minLease, s.cfg.ExpireTime+s.cfg.AliveTime)
}

// downloading reports that t's dfget may still be writing its file, which
// must then stay, and the server with it: the dfget's process runs, or,
// when the server cannot watch it, it checked in within its lease.
func (s *Server) downloading(t *task, now time.Time) bool {
	switch {
	case t.finished:
		return false
	case t.owner.pid == 0:
		return now.Sub(t.accessTime) <= s.lease(t)
	case !t.owner.alive():
		return false
	}
	// A live dfget may have given up the download and removed its file
	// (dfdaemon's in-process dfgets outlive their downloads): with no file
	// and no recent check there is nothing left to keep.
	if _, err := os.Lstat(filepath.Join(s.cfg.DataDir, t.name+ServiceSuffix)); err == nil {
		return true
	}
	return now.Sub(t.accessTime) <= s.lease(t)
}

// gc removes expired finished task files (all known ones when final, but
// those still being downloaded), and files in the data dir no task claims
// that are older than the expire time.
func (s *Server) gc(ctx context.Context, final bool) {
	now := time.Now()
	s.mu.Lock()
	expired := s.expireTasks(now, final)
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

// expireTasks forgets and returns the tasks whose files are to go. Caller
// holds s.mu.
func (s *Server) expireTasks(now time.Time, final bool) []*task {
	var expired []*task
	for name, t := range s.tasks {
		var expire bool
		switch {
		case s.downloading(t, now):
			// Not even when final: the file is the download's, and a server
			// that exits under it (a signal) must not fail it.
		case final:
			expire = true
		case !t.finished:
			// Its dfget is gone without finishing, or gave the download up.
			expire = now.Sub(t.accessTime) > s.cfg.ExpireTime+s.cfg.AliveTime
		default:
			last := t.accessTime
			if st, err := os.Stat(filepath.Join(s.cfg.DataDir, name+ServiceSuffix)); err == nil && st.ModTime().After(last) {
				last = st.ModTime()
			}
			expire = now.Sub(last) > s.cfg.ExpireTime
		}
		if expire {
			expired = append(expired, t)
			delete(s.tasks, name)
		}
	}
	return expired
}

// ShutdownSignals are the signals that end a peer server cleanly.
func ShutdownSignals() []os.Signal { return shutdown.Signals() }
