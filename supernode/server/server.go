// Package server is the supernode's HTTP side: the API router (legacy dfget
// protocol, /api/v1, preheat, system routes, with /v{version} aliases and
// per-category list endpoints), the envelope and error mapping, the
// Prometheus middleware, and the built-in piece server on the download port.
package server

// Peers is a plain in-memory store: the tests use the real one.
//go:generate go tool mockgen -source=server.go -destination=mock_deps_test.go -package=server -exclude_interfaces=Peers

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/version"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/pull"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

// Tasks is the task manager as the handlers use it.
type Tasks interface {
	Register(p task.RegisterParams) (types.RegisterResponseData, error)
	PieceSuccess(r task.PieceReport) error
	StreamPiece(r task.PieceReport, add bool) error
	ServiceDown(taskID, cid string, from netip.Addr) error
	DstPeer(taskID, dstCID string) string
	Info(id string) (types.TaskInfo, error)
	EnsureLocal(src cdn.Source) (string, error)
}

// ClusterView is the supernode's view of its cluster's members.
type ClusterView interface {
	Info() types.ClusterInfo
}

// ClusterCDN serves a task's file to another member, and tells which
// member a task is being read from (or its fill waits for), and whether
// its fill waits (for a slot, or for its home's fill): a fetch of such a
// task is refused, so no two members wait on each other holding a slot.
type ClusterCDN interface {
	MemberOf(taskID string) string
	Waiting(taskID string) bool
	Validators(taskID string) http.Header
	ServeMember(ctx context.Context, taskID string, w io.Writer, flush func() error, keepAlive time.Duration) error
}

// Puller answers /peer/task.
type Puller interface {
	Pull(ctx context.Context, q pull.Query) (pull.Result, error)
}

// Peers is the peer manager as the handlers use it.
type Peers interface {
	Register(req types.PeerCreateRequest) (string, error)
	Get(id string) (types.PeerInfo, error)
	List(pageNum, pageSize int, desc bool) []types.PeerInfo
}

// GC collects tasks and peers on demand (DELETE /api/v1/tasks/{id},
// DELETE /api/v1/peers/{id}).
type GC interface {
	GCTask(taskID string, full bool)
	DeletePeer(id string) error
}

// PieceErrors receives piece error reports, each from an address.
type PieceErrors interface {
	Report(req types.PieceErrorRequest, from netip.Addr) error
}

// Preheats runs preheat jobs.
type Preheats interface {
	Create(req types.PreheatCreateRequest) (id string, existed bool, err error)
	Get(id string) (types.PreheatInfo, error)
	List() []types.PreheatTask
	Delete(id string) bool
}

// Deps are what the API needs.
type Deps struct {
	Tasks       Tasks
	Pulls       Puller
	Peers       Peers
	GC          GC
	PieceErrors PieceErrors
	Preheats    Preheats
	// Cluster is nil when the supernode has no cluster.
	Cluster    ClusterView
	ClusterCDN ClusterCDN
	Metrics    *metrics.Metrics
	Log        logrus.FieldLogger
	Profiler   bool
	// AuthToken, when set, is required on every API call but /_ping.
	AuthToken string
	// SourceAllow, when not empty, lists the only source hosts accepted
	// at registration and preheat.
	SourceAllow []string
	// SourcePattern is the source CDN pattern, whose registrations refuse
	// a suffix Range: a preheat of one is refused when it is made too.
	SourcePattern bool
	// Closing, closed when the supernode shuts down, ends the streams to
	// other members: one lasts as long as its fill and would hold the
	// API server's shutdown to its deadline, when the asker can read the
	// origin instead. Nil: never.
	Closing <-chan struct{}
}

type api struct {
	Deps
	json jsonWriter
}

type route struct {
	method, path string
	h            http.HandlerFunc
}

type category struct {
	name, prefix string
	routes       []route
}

// categories is the route table: the legacy dfget protocol, /api/v1 and
// the (empty) extension category.
func (a *api) categories() []category {
	legacy := category{name: "legacy", prefix: "", routes: []route{
		{http.MethodPost, "/peer/registry", a.register},
		{http.MethodGet, "/peer/task", a.pullTask},
		{http.MethodGet, "/peer/piece/suc", a.pieceSuccess},
		{http.MethodGet, "/peer/piece/error", a.pieceError},
		{http.MethodGet, "/peer/service/down", a.serviceDown},
		{http.MethodPost, "/peer/piece/stream", a.streamPiece(true)},
		{http.MethodDelete, "/peer/piece/stream", a.streamPiece(false)},
		{http.MethodPost, "/peer/network", a.network},
		{http.MethodPost, "/peer/heartbeat", a.heartbeat},
		{http.MethodPost, "/task/metrics", a.taskMetrics},
		{http.MethodGet, "/_ping", a.ping},
		{http.MethodGet, "/version", a.version},
		{http.MethodGet, "/metrics", promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP},
	}}
	preheat := []route{
		{http.MethodPost, "/preheats", a.createPreheat},
		{http.MethodGet, "/preheats", a.listPreheats},
		{http.MethodGet, "/preheats/{id}", a.getPreheat},
		{http.MethodDelete, "/preheats/{id}", a.deletePreheat},
	}
	legacy.routes = append(legacy.routes, preheat...)
	v1 := category{name: "v1", prefix: "/api/v1", routes: append([]route{
		{http.MethodPost, "/peers", a.createPeer},
		{http.MethodGet, "/peers", a.listPeers},
		{http.MethodGet, "/peers/{id}", a.getPeer},
		{http.MethodDelete, "/peers/{id}", a.deletePeer},
		{http.MethodGet, "/tasks/{id}", a.getTask},
		{http.MethodDelete, "/tasks/{id}", a.deleteTask},
		{http.MethodGet, "/tasks/{id}/pieces/{pieceRange}/error", a.v1PieceError},
		{http.MethodPost, "/peer/network", a.network},
		{http.MethodPost, "/peer/heartbeat", a.heartbeat},
		{http.MethodGet, "/cluster", a.clusterInfo},
		{http.MethodPost, "/cluster/fetch", a.clusterFetch},
	}, preheat...)}
	ext := category{name: "extension", prefix: "/api/ext"}
	return []category{v1, ext, legacy}
}

// NewAPI builds the API handler.
func NewAPI(d Deps) http.Handler {
	a := &api{Deps: d}
	r := mux.NewRouter()
	// exact maps a path without variables and a method to its handler:
	// looked up before the router, whose regexp matching of every route
	// in turn cost as much as the /peer/task handler's own work.
	exact := map[string]map[string]http.Handler{}
	handle := func(method, p string, h http.Handler) {
		r.Handle(p, h).Methods(method)
		r.Handle("/v{version:[0-9.]+}"+p, h).Methods(method)
		if !strings.Contains(p, "{") {
			if exact[p] == nil {
				exact[p] = map[string]http.Handler{}
			}
			exact[p][method] = h
		}
	}
	for _, c := range a.categories() {
		for _, rt := range c.routes {
			p := c.prefix + rt.path
			handle(rt.method, p, a.instrument(p, rt.h))
		}
		handle(http.MethodGet, c.prefix+"/", a.instrument(c.prefix+"/", a.listAPI(c)))
	}
	if d.Profiler {
		r.HandleFunc("/debug/pprof/", pprof.Index)
		r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, http.StatusNotFound, "no such route")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, http.StatusMethodNotAllowed, "method not allowed")
	})
	// A route not in exact (variables, a version prefix, a method the
	// path does not have: 405) goes through the router, as everything did.
	dispatch := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if h := exact[req.URL.Path][req.Method]; h != nil {
			h.ServeHTTP(w, req)
			return
		}
		r.ServeHTTP(w, req)
	})
	return recoverer(d.Log, requireToken(d.AuthToken, dispatch))
}

// recoverer turns a handler panic into a 500 instead of a dropped
// connection; handlers are written not to panic, this is the last guard.
func recoverer(log logrus.FieldLogger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Errorf("panic serving %s %s: %v", shown(r.Method), shown(r.URL.Path), v)
				writeError(w, http.StatusInternalServerError, types.CodeSystemError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (a *api) listAPI(c category) http.HandlerFunc {
	type entry struct {
		Method string `json:"method"`
		Path   string `json:"path"`
	}
	list := make([]entry, 0, len(c.routes))
	for _, rt := range c.routes {
		list = append(list, entry{rt.method, c.prefix + rt.path})
	}
	body := map[string]any{"category": c.name, "prefix": c.prefix, "api": list}
	return func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, body) }
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	size   int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.size += int64(n)
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts and times a handler's requests. The collectors of the
// handler are looked up once (the label hashing of WithLabelValues cost
// several per cent of the supernode's CPU at thousands of requests a
// second), each on first use so that no zero series appears for a route
// never called.
func (a *api) instrument(handler string, h http.HandlerFunc) http.Handler {
	m := a.Metrics
	requests := m.HTTPRequests.MustCurryWith(prometheus.Labels{"handler": handler})
	ok := sync.OnceValue(func() prometheus.Counter { return requests.WithLabelValues(strconv.Itoa(http.StatusOK)) })
	observer := func(v *prometheus.HistogramVec) func() prometheus.Observer {
		return sync.OnceValue(func() prometheus.Observer { return v.WithLabelValues(handler) })
	}
	duration, reqSize, respSize := observer(m.HTTPDuration), observer(m.HTTPRequestSize), observer(m.HTTPResponseSize)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timer := newTimer()
		sw := &statusWriter{ResponseWriter: w}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(sw, r.Body, maxBodySize)
		}
		h(sw, r)
		if sw.status == 0 || sw.status == http.StatusOK {
			ok().Inc()
		} else {
			requests.WithLabelValues(strconv.Itoa(sw.status)).Inc()
		}
		duration().Observe(timer.seconds())
		if r.ContentLength > 0 {
			reqSize().Observe(float64(r.ContentLength))
		}
		respSize().Observe(float64(sw.size))
	})
}

// readBody reads a (size-limited) body; errMsg says what was too big.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, errors.New("empty body")
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errors.New("request body too large")
		}
		return nil, err
	}
	return b, nil
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func localIP(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return hostOnly(a.String())
	}
	return ""
}

func (a *api) ping(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "OK")
}

func (a *api) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, version.Info())
}

func (a *api) network(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nil})
}

func (a *api) heartbeat(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"seedTaskIDs": nil})
}

func trimContentType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct)
}
