package synth

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PathPrefix is where files are served: GET /files/<size>/<name>.
const PathPrefix = "/files/"

// StatsPath answers the byte counters as JSON (Stats).
const StatsPath = "/_stats"

// PingPath answers "OK" once the server is up.
const PingPath = "/_ping"

// modTime is fixed so that Last-Modified is the same in every run.
var modTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// FilePath is the URL path of the file called name with the given size.
func FilePath(name string, size int64) string {
	return PathPrefix + strconv.FormatInt(size, 10) + "/" + name
}

// Stats are the origin's counters since it started.
type Stats struct {
	Requests    int64            `json:"requests"`
	BytesServed int64            `json:"bytesServed"`
	ByPath      map[string]int64 `json:"byPath"`
}

// Server serves synthetic files with Range, Content-Length, ETag and
// Last-Modified (through http.ServeContent) and counts the body bytes it
// writes, per path and in total.
type Server struct {
	requests atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	byPath   map[string]int64
}

// NewServer returns a Server with zeroed counters.
func NewServer() *Server { return &Server{byPath: map[string]int64{}} }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{Requests: s.requests.Load(), BytesServed: s.bytes.Load(), ByPath: map[string]int64{}}
	s.mu.Lock()
	for k, v := range s.byPath {
		st.ByPath[k] = v
	}
	s.mu.Unlock()
	return st
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == PingPath:
		_, _ = w.Write([]byte("OK"))
	case r.URL.Path == StatsPath:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	case strings.HasPrefix(r.URL.Path, PathPrefix):
		s.serveFile(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	sizeStr, name, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, PathPrefix), "/")
	size, err := strconv.ParseInt(sizeStr, 10, 64)
	if !ok || err != nil || size < 0 || name == "" {
		http.NotFound(w, r)
		return
	}
	c, err := New(name, size)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.requests.Add(1)
	cw := &countingWriter{ResponseWriter: w}
	w.Header().Set("ETag", c.ETag())
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(cw, r, "", modTime, c)
	s.bytes.Add(cw.n)
	s.mu.Lock()
	s.byPath[r.URL.Path] += cw.n
	s.mu.Unlock()
}

// countingWriter counts file bytes actually handed to the connection; error
// bodies (416 and the like) are not file bytes and are not counted.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	if c.status == 0 || c.status == http.StatusOK || c.status == http.StatusPartialContent {
		c.n += int64(n)
	}
	return n, err
}
