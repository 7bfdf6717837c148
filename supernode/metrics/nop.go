package metrics

import "github.com/prometheus/client_golang/prometheus"

// The Or functions return the collector they are given, or, for nil, an
// unregistered collector of the same kind that nobody reads. A manager
// fills its optional collectors with them once in its constructor, so the
// code that counts never checks for nil (tests and tools build managers
// without metrics).

// OrCounter returns c, or an unread counter when c is nil.
func OrCounter(c prometheus.Counter) prometheus.Counter {
	if c == nil {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "unread"})
	}
	return c
}

// OrGauge returns g, or an unread gauge when g is nil.
func OrGauge(g prometheus.Gauge) prometheus.Gauge {
	if g == nil {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "unread"})
	}
	return g
}

// OrCounterVec returns v, or an unread counter vector with these labels.
func OrCounterVec(v *prometheus.CounterVec, labels ...string) *prometheus.CounterVec {
	if v == nil {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unread"}, labels)
	}
	return v
}

// OrGaugeVec returns v, or an unread gauge vector with these labels.
func OrGaugeVec(v *prometheus.GaugeVec, labels ...string) *prometheus.GaugeVec {
	if v == nil {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "unread"}, labels)
	}
	return v
}

// OrHistogramVec returns v, or an unread histogram vector with these labels.
func OrHistogramVec(v *prometheus.HistogramVec, labels ...string) *prometheus.HistogramVec {
	if v == nil {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "unread"}, labels)
	}
	return v
}
