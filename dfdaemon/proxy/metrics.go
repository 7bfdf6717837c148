package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Route labels of the proxy's metrics.
const (
	routeSwarm     = "swarm"     // a GET handed to the swarm
	routeDirect    = "direct"    // a request forwarded to its origin
	routeTunnel    = "tunnel"    // a CONNECT spliced to its host
	routeIntercept = "intercept" // a CONNECT whose TLS dfdaemon terminated
)

// metrics counts what the proxy did with each request; nil collectors
// (no Registerer) make every call a no-op.
type metrics struct {
	requests *prometheus.CounterVec // by route
	open     *prometheus.GaugeVec   // tunnels and intercepted connections open now, by route
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return &metrics{}, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dragonfly", Subsystem: "dfdaemon", Name: "proxy_requests_total",
			Help: "Proxy requests by route: swarm, direct, tunnel, intercept.",
		}, []string{"route"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dragonfly", Subsystem: "dfdaemon", Name: "proxy_connections",
			Help: "CONNECT tunnels and intercepted connections open now, by route.",
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) request(route string) {
	if m.requests != nil {
		m.requests.WithLabelValues(route).Inc()
	}
}

// opened counts a request on route and one more open connection; the
// returned func counts it closed.
func (m *metrics) opened(route string) func() {
	m.request(route)
	if m.open == nil {
		return func() {}
	}
	g := m.open.WithLabelValues(route)
	g.Inc()
	return g.Dec
}
