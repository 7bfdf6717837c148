// Package uploader is the dfget peer server: one `dfget server` process per
// host and work home that serves the pieces of the files its dfgets
// downloaded (and the stream caches of streaming dfgets) to other peers, in
// the wrapped piece format of Dragonfly 1.x. It also holds the host-wide
// upload limiter and the /rate/ fair share of --totallimit, and cleans up:
// files expire after their last access, the process after idling.
package uploader

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/version"
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
}

// NewServer returns a peer server for cfg.
func NewServer(cfg ServerConfig, log *logrus.Logger) *Server {
	if cfg.Token == "" {
		cfg.Token = rand.Text()
	}
	s := &Server{cfg: cfg, log: log, client: api.New(), nodes: map[string]*api.Client{}, tasks: map[string]*task{},
		streams: map[string]*streamCache{}, slotTTL: 30 * time.Second}
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
// also send the server's token, which only the user can read from the meta
// file.
func (s *Server) local(h http.HandlerFunc) http.HandlerFunc {
	want := []byte(s.cfg.Token)
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !(ip.IsLoopback() || host == s.cfg.IP) {
			text(w, http.StatusForbidden, "control endpoints are for local dfget only")
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(api.HeaderLocalToken)), want) != 1 {
			text(w, http.StatusForbidden, "control endpoints want this server's local token (see its meta file)")
			return
		}
		h(w, r)
	}
}

// validName accepts a plain file name: the peer server serves only files
// directly in its data directory.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\\\x00")
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	if !validName(name) {
		text(w, http.StatusBadRequest, "invalid task file name")
		return
	}
	if d := r.Header.Get(api.HeaderDataDir); d != "" && filepath.Clean(d) != filepath.Clean(s.cfg.DataDir) {
		text(w, http.StatusBadRequest, "dataDir does not match this server's")
		return
	}
	if v := r.Header.Get(api.HeaderTotalLimit); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			text(w, http.StatusBadRequest, "invalid totalLimit")
			return
		}
		if n > 0 {
			s.setTotalLimit(n)
		}
	}
	s.mu.Lock()
	t, ok := s.tasks[name]
	if !ok {
		t = &task{name: name}
		s.tasks[name] = t
	}
	t.accessTime = time.Now()
	s.mu.Unlock()
	text(w, http.StatusOK, name+"@"+version.Version)
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

func (s *Server) handleFinish(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, taskID, cid := q.Get("taskFileName"), q.Get("taskID"), q.Get("cid")
	if !validName(name) || taskID == "" || cid == "" {
		text(w, http.StatusBadRequest, "invalid params")
		return
	}
	s.mu.Lock()
	t, ok := s.tasks[name]
	if !ok {
		t = &task{name: name}
		s.tasks[name] = t
	}
	t.finished, t.rateLimit, t.accessTime = true, 0, time.Now()
	t.taskID, t.cid, t.superNode = taskID, cid, q.Get("superNode")
	t.node = s.nodeClient(api.NodeCredsFrom(r.Header))
	s.mu.Unlock()
	text(w, http.StatusOK, "success")
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

func (s *Server) handleRate(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	req, err := strconv.ParseInt(r.Header.Get(api.HeaderRateLimit), 10, 64)
	if err != nil || req < 0 || !validName(name) {
		text(w, http.StatusBadRequest, "invalid rateLimit")
		return
	}
	s.mu.Lock()
	if t, ok := s.tasks[name]; ok {
		t.rateLimit = req
	}
	var sum int64
	for _, t := range s.tasks {
		if !t.finished {
			sum += t.rateLimit
		}
	}
	total := s.total
	s.mu.Unlock()
	text(w, http.StatusOK, strconv.FormatInt(FairShare(req, total, sum), 10))
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

// pieceRequest is a parsed /peer/file request: the content bytes
// [start, start+length) of the plain file, and whether to wrap them.
type pieceRequest struct {
	num       int
	pieceSize int32
	start     int64
	length    int64
	wrapped   bool
}

// parsePieceRequest reads the Range, pieceNum, pieceSize and cdnSource
// headers. The range is in wrapped coordinates unless cdnSource is source.
func parsePieceRequest(h http.Header) (pieceRequest, error) {
	var p pieceRequest
	rg := h.Get("Range")
	spec, ok := strings.CutPrefix(rg, "bytes=")
	if !ok || strings.Count(spec, "-") != 1 {
		return p, fmt.Errorf("invalid Range %q", rg)
	}
	start, end, err := piece.ParseRange(spec)
	if err != nil {
		return p, err
	}
	p.wrapped = h.Get("cdnSource") != "source"
	num, err := strconv.Atoi(h.Get(api.HeaderPieceNum))
	if err != nil || num < 0 {
		return p, fmt.Errorf("invalid pieceNum %q", h.Get(api.HeaderPieceNum))
	}
	size, err := strconv.ParseInt(h.Get(api.HeaderPieceSize), 10, 32)
	if err != nil || size <= piece.WrapSize || size > 1<<26 {
		return p, fmt.Errorf("invalid pieceSize %q", h.Get(api.HeaderPieceSize))
	}
	p.num, p.pieceSize = num, int32(size)
	if end-start+1 > size {
		return p, fmt.Errorf("range %s is longer than a piece", spec)
	}
	if !p.wrapped {
		p.start, p.length = start, end-start+1
		return p, nil
	}
	if start != int64(num)*size {
		return p, fmt.Errorf("range %s does not start piece %d", spec, num)
	}
	if end-start+1 < piece.WrapSize {
		return p, fmt.Errorf("range %s is shorter than the piece wrapper", spec)
	}
	p.start = start - int64(num)*piece.WrapSize
	p.length = end - start + 1 - piece.WrapSize
	return p, nil
}

func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	if !validName(name) {
		text(w, http.StatusBadRequest, "invalid task file name")
		return
	}
	pr, err := parsePieceRequest(r.Header)
	if err != nil {
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	sc := s.streams[name]
	t := s.tasks[name]
	if t != nil {
		t.accessTime = time.Now()
	}
	s.mu.Unlock()
	if sc != nil {
		s.serveStream(w, sc, pr)
		return
	}
	if t == nil {
		text(w, http.StatusNotFound, "unknown task file")
		return
	}
	f, err := openRegular(filepath.Join(s.cfg.DataDir, name+ServiceSuffix))
	if err != nil {
		text(w, http.StatusNotFound, "task file not available")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		text(w, http.StatusInternalServerError, "stat task file")
		return
	}
	n := pr.length
	if rest := st.Size() - pr.start; rest < n {
		n = rest
	}
	if n < 0 || (n == 0 && (pr.length > 0 || !pr.wrapped)) {
		text(w, http.StatusRequestedRangeNotSatisfiable, "range not satisfiable")
		return
	}
	total := n
	if pr.wrapped {
		total += piece.WrapSize
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
	w.WriteHeader(http.StatusPartialContent)
	if r.Method == http.MethodHead {
		return
	}
	copyContent := func(w io.Writer) error { return s.copyLimited(r.Context(), w, f, pr.start, n) }
	if pr.wrapped {
		err = piece.WriteWrapped(w, n, pr.pieceSize, copyContent)
	} else {
		err = copyContent(w)
	}
	if err != nil {
		s.log.Debugf("serve %s piece %d: %v", name, pr.num, err)
	}
}

// copyLimited copies n bytes at off of f to w: through the host upload
// limiter when one is set, else straight (sendfile).
func (s *Server) copyLimited(ctx context.Context, w io.Writer, f *os.File, off, n int64) error {
	s.mu.Lock()
	l := s.limiter
	s.mu.Unlock()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	if l == nil {
		_, err := io.CopyN(w, f, n)
		return err
	}
	_, err := io.CopyN(w, api.LimitReader(ctx, f, l), n)
	return err
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
