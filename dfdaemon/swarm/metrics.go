package swarm

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the swarm's collectors.
type Metrics struct {
	// Streams counts stream downloads by result: p2p (every byte from the
	// swarm), source (the swarm fell back to the source), digest_mismatch,
	// client_gone, failed.
	Streams   *prometheus.CounterVec
	Bytes     prometheus.Counter
	InFlight  prometheus.Gauge
	Forwarded prometheus.Counter
	// Warmed counts blobs whose CDN fill a manifest started (Warm).
	Warmed prometheus.Counter
	// Waiting is the GETs waiting for a stream slot (Options.MaxStreams);
	// WaitTimeouts counts those forwarded to the source after waiting
	// Options.StreamWait.
	Waiting      prometheus.Gauge
	WaitTimeouts prometheus.Counter
}

// NewMetrics builds the collectors and registers them on reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Streams: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
			Name: "streams_total", Help: "Stream downloads served, by result."}, []string{"result"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
			Name: "stream_bytes_total", Help: "Bytes sent to clients by stream downloads."}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
			Name: "streams_in_flight", Help: "Stream downloads in progress."}),
		Forwarded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
			Name: "forwarded_total", Help: "Requests forwarded to their source as they are."}),
		Warmed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
			Name: "warmed_total", Help: "Blobs whose CDN fill was started when their manifest passed."}),
		Waiting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
			Name: "streams_waiting", Help: "Blob GETs waiting for a stream slot (--max-streams)."}),
		WaitTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dragonfly", Subsystem: "dfdaemon",
			Name: "stream_wait_timeouts_total", Help: "Blob GETs forwarded to the registry after waiting the bound for a stream slot."}),
	}
	for _, r := range []string{"p2p", "source", "digest_mismatch", "client_gone", "failed"} {
		m.Streams.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Streams, m.Bytes, m.InFlight, m.Forwarded, m.Warmed, m.Waiting, m.WaitTimeouts)
	}
	return m
}

func (m *Metrics) result(r string) { m.Streams.WithLabelValues(r).Inc() }
