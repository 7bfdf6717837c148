package dfgetbench

import (
	"fmt"
	"slices"
	"time"
)

// Round is one round's runs, made one after the other on the same file
// size and machine state: curl, the CDN alone, a cold dfget, a warm one
// and a stream (MeasureColdWarm fills only Curl, Cold and Warm).
type Round struct {
	Curl, Cold, Warm, Stream Run
	CDN                      time.Duration
}

// Rounds are a measurement's rounds in order. The targets are checked on
// the median over rounds of each round's own ratio: the two runs of a
// ratio then met the same machine state (on this VM, what a new page
// costs moves several-fold from one minute to the next, and both curl -o
// and a dfget pay it), and one odd round moves the median little. The
// ratio of two best-of-rounds figures, printed beside it, pairs each
// kind's luckiest round, from different moments.
type Rounds []Round

// Spread is the median, least and greatest of per-round ratios (all zero
// without rounds).
type Spread struct{ Median, Lo, Hi float64 }

func (s Spread) String() string {
	return fmt.Sprintf("median %.2fx (%.2f-%.2fx)", s.Median, s.Lo, s.Hi)
}

// spread is the Spread of x over the rounds.
func (rs Rounds) spread(x func(Round) float64) Spread {
	if len(rs) == 0 {
		return Spread{}
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = x(r)
	}
	slices.Sort(v)
	n := len(v)
	m := v[n/2]
	if n%2 == 0 {
		m = (v[n/2-1] + v[n/2]) / 2
	}
	return Spread{Median: m, Lo: v[0], Hi: v[n-1]}
}

// Cold is each round's cold dfget time over its curl time (target <= 1.3).
func (rs Rounds) Cold() Spread {
	return rs.spread(func(r Round) float64 { return ratio(r.Cold.Wall, r.Curl.Wall) })
}

// Warm is each round's warm dfget time over its curl time (target <= 1.1).
func (rs Rounds) Warm() Spread {
	return rs.spread(func(r Round) float64 { return ratio(r.Warm.Wall, r.Curl.Wall) })
}

// Stream is each round's stream throughput over its warm file-mode
// throughput (target >= 0.8).
func (rs Rounds) Stream() Spread {
	return rs.spread(func(r Round) float64 { return ratio(r.Warm.Wall, r.Stream.Wall) })
}

// CDN is each round's CDN fill time over its curl time (target <= 1.2).
func (rs Rounds) CDN() Spread {
	return rs.spread(func(r Round) float64 { return ratio(r.CDN, r.Curl.Wall) })
}

// CPU is each round's CPU of the run kind picks (the dfget and its peer
// server) over that round's curl CPU, for the same bytes (target <= 2).
func (rs Rounds) CPU(kind func(Round) Run) Spread {
	return rs.spread(func(r Round) float64 {
		k := kind(r)
		return ratio(k.CPU+k.ServerCPU, r.Curl.CPU)
	})
}
