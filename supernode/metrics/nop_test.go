package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestOrKeepsGivenAndFillsNil(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "given"})
	if OrCounter(c) != c {
		t.Fatal("OrCounter replaced a given counter")
	}
	// Nil collectors become usable ones: none of these may panic.
	OrCounter(nil).Inc()
	OrGauge(nil).Set(3)
	OrCounterVec(nil, "holder").WithLabelValues("peer").Inc()
	OrGaugeVec(nil, "status").WithLabelValues("x").Inc()
	OrHistogramVec(nil, "peer").WithLabelValues("1.2.3.4").Observe(1)
	v := OrCounterVec(nil, "a", "b")
	v.WithLabelValues("1", "2").Add(2)
	var m dto.Metric
	if err := v.WithLabelValues("1", "2").Write(&m); err != nil || m.GetCounter().GetValue() != 2 {
		t.Fatalf("unread vector counted %v (%v), want 2", m.GetCounter().GetValue(), err)
	}
}
