// Package server is dfdaemon's front door: the listener (HTTP, or HTTPS
// with --certpem/--keypem) and the routing of every request to the HTTP
// proxy (CONNECT and absolute-URI requests), to dfdaemon's own endpoints
// (/_ping, /metrics, /debug/version) or to the registry mirror.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// Handler routes dfdaemon's requests.
type Handler struct {
	// Mirror serves everything that is not the proxy's or dfdaemon's own.
	Mirror http.Handler
	// Proxy serves CONNECT and absolute-URI (proxy-form) requests; nil
	// answers them 405.
	Proxy   http.Handler
	Metrics http.Handler
}

// NewRegistry is the registry of dfdaemon's metrics: Go and process
// collectors and dragonfly_dfdaemon_build_info.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	v := version.Info()
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
		Name: "build_info", Help: "Build information."}, []string{"version", "revision", "goversion"})
	info.WithLabelValues(v.Version, v.Revision, v.GoVersion).Set(1)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return r
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect || r.URL.IsAbs() || r.URL.Host != "" {
		if h.Proxy == nil {
			http.Error(w, "dfdaemon: this dfdaemon runs no HTTP proxy (a proxy request reached the registry mirror port)",
				http.StatusMethodNotAllowed)
			return
		}
		h.Proxy.ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/_ping":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("OK"))
	case "/metrics":
		h.Metrics.ServeHTTP(w, r)
	case "/debug/version":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(version.Info())
	default:
		h.Mirror.ServeHTTP(w, r)
	}
}

// MetricsHandler serves reg.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// Serve serves h on l (with TLS when cert is set) until ctx ends, then
// shuts down, giving streams in flight up to grace. The pair is loaded by
// the caller, before it listens, so that a bad one is a configuration
// error rather than a listener that fails after it was announced.
func Serve(ctx context.Context, l net.Listener, h http.Handler, cert *tls.Certificate, grace time.Duration) error {
	// No write timeout: a layer streams as long as it takes; a client
	// that is gone is noticed by the failed writes, and one that stopped
	// reading by the idle deadline each write sets (pkg/httpidle).
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 1 << 20}
	errc := make(chan error, 1)
	go func() {
		if cert != nil {
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
			errc <- srv.ServeTLS(l, "", "")
			return
		}
		errc <- srv.Serve(l)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
