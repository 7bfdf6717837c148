package load

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// histogram collects the cumulative buckets of metric name (the samples
// name_bucket{...,le="x"}) whose label text contains filter, summed over
// label sets, minus the same from before (a scrape taken earlier).
func histogram(after, before map[string]float64, name, filter string) []bucket {
	sum := map[float64]float64{}
	for k, v := range after {
		rest, ok := strings.CutPrefix(k, name+"_bucket{")
		if !ok || !strings.Contains(rest, filter) {
			continue
		}
		i := strings.Index(rest, `le="`)
		if i < 0 {
			continue
		}
		le := rest[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		b, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		sum[b] += v - before[k]
	}
	var out []bucket
	for le, c := range sum {
		out = append(out, bucket{le, c})
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// quantile estimates the q-quantile (0..1) of a cumulative histogram by
// linear interpolation inside the bucket that holds it, as Prometheus's
// histogram_quantile does. It returns +Inf when the quantile lies in the
// +Inf bucket and NaN for an empty histogram.
func quantile(bs []bucket, q float64) float64 {
	if len(bs) == 0 || bs[len(bs)-1].count <= 0 {
		return math.NaN()
	}
	total := bs[len(bs)-1].count
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return math.Inf(1)
			}
			if b.count == prevCount {
				return b.le
			}
			return prevLe + (b.le-prevLe)*(rank-prevCount)/(b.count-prevCount)
		}
		prevLe, prevCount = b.le, b.count
	}
	return math.Inf(1)
}
