// Package uploader is the dfget peer server: one `dfget server` process per
// host and work home that serves the pieces of the files its dfgets
// downloaded (and the stream caches of streaming dfgets) to other peers, in
// the wrapped piece format of Dragonfly 1.x. It also holds the host-wide
// upload limiter and the /rate/ fair share of --totallimit, and cleans up:
// files expire after their last access, the process after idling.
//
// server.go holds the routes, their guards and the server's shared state;
// handlers.go the HTTP handlers; cache.go the stream cache (with ring.go,
// its memory shared with the streaming dfget); run.go the server's life
// and file expiry; spawn.go how a dfget finds or starts its server.
package uploader

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
)

// ServiceSuffix is appended to a task file name to get the file served.
const ServiceSuffix = ".service"

// ServerConfig configures a peer server.
type ServerConfig struct {
	IP         string
	Port       int
	MetaPath   string
	DataDir    string
	ExpireTime time.Duration
	AliveTime  time.Duration
	// NodeToken and NodeCACerts secure the server's calls to supernodes
	// (stream-cache reports, service-down), as dfget's --node-token /
	// --node-cacerts, for tasks whose dfget sent no credentials of its own.
	NodeToken   string
	NodeCACerts []string
	// Token is the secret a caller of the local-only endpoints must send
	// (api.HeaderLocalToken); NewServer makes a random one when empty.
	// Run records it in MetaPath, which only the user can read.
	Token string
	// Ready, when set, gets one byte and is closed once MetaPath names
	// this server and its listener is up: the dfget that spawned it waits
	// on that instead of polling host.meta.
	Ready io.WriteCloser
}

type task struct {
	name       string
	finished   bool
	rateLimit  int64
	accessTime time.Time
	taskID     string
	cid        string
	superNode  string
	node       *api.Client // reaches superNode; set with it by /client/finish
	// owner and checkEvery are what the dfget downloading the task said
	// at /check: its process, and how often it checks again.
	owner      proc
	checkEvery time.Duration
}

// Server is the peer server. Create it with NewServer.
type Server struct {
	cfg    ServerConfig
	log    *logrus.Logger
	client *api.Client

	mu      sync.Mutex
	nodes   map[string]*api.Client // by credentials (nodeClient)
	tasks   map[string]*task
	streams map[string]*streamCache
	limiter *xrate.Limiter
	total   int64

	lastActive atomic.Int64
	inflight   atomic.Int64
	// slotTTL is how long a reserved stream ring slot waits for its commit.
	slotTTL time.Duration
	// uploadGrace and uploadFloorRate make a piece response's write
	// deadline (uploadDeadline).
	uploadGrace     time.Duration
	uploadFloorRate float64
	// idleEvery is how often Run checks whether it idled out, and
	// idleChecks counts the checks that found it still in use: tests
	// shorten the one and wait on the other, rather than sleep through
	// checks that may not have run yet.
	idleEvery  time.Duration
	idleChecks atomic.Int64
}

// NewServer returns a peer server for cfg.
func NewServer(cfg ServerConfig, log *logrus.Logger) *Server {
	if cfg.Token == "" {
		cfg.Token = rand.Text()
	}
	s := &Server{cfg: cfg, log: log, client: api.New(), nodes: map[string]*api.Client{}, tasks: map[string]*task{},
		streams: map[string]*streamCache{}, slotTTL: 30 * time.Second, idleEvery: time.Second,
		uploadGrace: uploadGrace, uploadFloorRate: uploadFloorRate}
	if err := s.client.SecureNodes(cfg.NodeToken, cfg.NodeCACerts); err != nil {
		// Files are still served; only stream-cache reports will fail.
		log.Warnf("supernode token/CA: %v", err)
	}
	s.touch()
	return s
}

func (s *Server) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// Handler returns the peer server's routes.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/peer/file/{name}", s.active(s.handleFile)).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/check/{name}", s.active(s.local(s.handleCheck))).Methods(http.MethodGet)
	r.HandleFunc("/client/finish", s.local(s.handleFinish)).Methods(http.MethodGet)
	r.HandleFunc("/rate/{name}", s.active(s.local(s.handleRate))).Methods(http.MethodGet)
	r.HandleFunc("/server/ping", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "success") })
	r.HandleFunc("/stream/task", s.active(s.local(s.handleStreamTask))).Methods(http.MethodPost, http.MethodDelete)
	r.HandleFunc("/stream/piece", s.active(s.local(s.handleStreamPiece))).Methods(http.MethodPost)
	r.HandleFunc("/stream/slot", s.active(s.local(s.handleStreamSlot))).Methods(http.MethodPost)
	return r
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// active marks the server busy while the request runs and alive after it.
func (s *Server) active(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer func() { s.inflight.Add(-1); s.touch() }()
		s.touch()
		h(w, r)
	}
}

// local admits only the dfgets of this host's user: the control endpoints
// register files to serve and set limits. A local source address is not
// enough, since any local service that fetches URLs for others (a
// supernode on this host, a proxy) connects from it too: the caller must
// also show the server's token, which only the user can read from the meta
// file (hasToken).
func (s *Server) local(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !(ip.IsLoopback() || host == s.cfg.IP || sameHost(r, ip)) {
			text(w, http.StatusForbidden, "control endpoints are for local dfget only")
			return
		}
		if !s.hasToken(r.Header) {
			text(w, http.StatusForbidden, "control endpoints want this server's local token (see its meta file)")
			return
		}
		h(w, r)
	}
}

// hasToken reports that a request shows the server's token: sends it, or,
// as a dfget's check does (api.Client.CheckServer), a nonce with its
// api.CheckAuth MAC, so that a listener on the port of a dead server never
// learns the token from a check.
func (s *Server) hasToken(h http.Header) bool {
	if subtle.ConstantTimeCompare([]byte(h.Get(api.HeaderLocalToken)), []byte(s.cfg.Token)) == 1 {
		return true
	}
	n := h.Get(api.HeaderCheckNonce)
	return api.ValidNonce(n) &&
		subtle.ConstantTimeCompare([]byte(h.Get(api.HeaderCheckAuth)), []byte(api.CheckAuth(s.cfg.Token, n))) == 1
}

// sameHost reports that the request came from this host: its source is
// the address it reached us on. A server listening on every address
// (0.0.0.0, as dfdaemon's) has no IP of its own to compare with, and the
// dfgets of its host call it on the host's outward address.
func sameHost(r *http.Request, remote net.IP) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	return err == nil && remote.Equal(net.ParseIP(host))
}

// validName accepts a plain file name: the peer server serves only files
// directly in its data directory.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\\\x00")
}

func (s *Server) setTotalLimit(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n == s.total {
		return
	}
	s.total = n
	burst := int(min(n, 256<<10))
	if s.limiter == nil {
		s.limiter = xrate.NewLimiter(xrate.Limit(n), burst)
		return
	}
	s.limiter.SetLimit(xrate.Limit(n))
	s.limiter.SetBurst(burst)
}

// nodeClient returns a client that reaches supernodes with creds, one per
// distinct credentials; without any, the server's own (from the dfget that
// started it). Caller holds mu.
func (s *Server) nodeClient(creds api.NodeCreds) *api.Client {
	if creds.Token == "" && len(creds.CACerts) == 0 {
		return s.client
	}
	key := creds.Token + "\x00" + strings.Join(creds.CACerts, ",")
	if c := s.nodes[key]; c != nil {
		return c
	}
	c := api.New()
	if err := c.SecureNodes(creds.Token, creds.CACerts); err != nil {
		s.log.Warnf("supernode credentials of a dfget: %v; reporting with the server's own", err)
		return s.client
	}
	s.nodes[key] = c
	return c
}

// FairShare is a download's share of the host's total limit: its request
// when the requests fit, else its proportion of total.
func FairShare(req, total, sum int64) int64 {
	if total <= 0 || sum <= total || sum <= 0 {
		if total > 0 && req > total {
			return total
		}
		return req
	}
	return int64(math.Ceil(float64(req) * float64(total) / float64(sum)))
}

// copyAt copies n bytes at off of f to w (by sendfile when w is the
// connection's own writer).
func copyAt(w io.Writer, f *os.File, off, n int64) error {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek task file: %w", err)
	}
	if _, err := io.CopyN(w, f, n); err != nil {
		return fmt.Errorf("send task file: %w", err)
	}
	return nil
}

// openRegular opens path for reading only if it is a regular file and not a
// symlink, so a planted link cannot make the server read outside its data.
func openRegular(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	return f, nil
}

// stream returns the stream cache of a task file, or nil.
func (s *Server) stream(name string) *streamCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[name]
}

// openStream makes a new stream cache serve t's task file, replacing (and
// shutting) the one before, and starts its notifier. Its reports go with
// the streaming dfget's credentials.
func (s *Server) openStream(t api.StreamTask, rg *ring, creds api.NodeCreds, owner proc) {
	s.mu.Lock()
	sc := newStreamCache(t, rg, s.nodeClient(creds), owner)
	old := s.streams[t.TaskFileName]
	s.streams[t.TaskFileName] = sc
	s.mu.Unlock()
	if old != nil {
		old.replaced()
	}
	go sc.notify(s.log)
}

// closeStream drops a stream cache, reporting its pieces as evicted.
func (s *Server) closeStream(name string) {
	s.mu.Lock()
	sc := s.streams[name]
	delete(s.streams, name)
	s.mu.Unlock()
	if sc != nil {
		sc.drop()
	}
}

// dropOrphanStreams closes the stream caches whose dfget process is gone.
func (s *Server) dropOrphanStreams() {
	var gone []string
	s.mu.Lock()
	for name, sc := range s.streams {
		if !sc.owner.alive() {
			gone = append(gone, name)
		}
	}
	s.mu.Unlock()
	for _, name := range gone {
		s.log.Infof("stream %s: its dfget is gone, dropping the cache", name)
		s.closeStream(name)
	}
}
