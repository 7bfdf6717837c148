package dfgetbench

import (
	"context"
	"fmt"
	"strconv"
)

// ColdWarm are the cold and warm figures of one file size beside curl's,
// without the CDN-alone and stream runs of Measure: the same method at a
// second size for little extra time.
type ColdWarm struct {
	Size int64
	Runs int
	Curl Run
	Cold Run // dfget, task not yet in the CDN
	Warm Run // dfget, task in the CDN
	// Rounds are every round's runs (Curl, Cold and Warm): the targets
	// are checked on their per-round ratios.
	Rounds Rounds
}

// ColdRatio is cold dfget time over curl time (target <= 1.3).
func (c *ColdWarm) ColdRatio() float64 { return ratio(c.Cold.Wall, c.Curl.Wall) }

// WarmRatio is warm dfget time over curl time (target <= 1.10).
func (c *ColdWarm) WarmRatio() float64 { return ratio(c.Warm.Wall, c.Curl.Wall) }

// MeasureColdWarm starts an origin and a supernode and runs cfg.Runs
// rounds of curl, a cold dfget and a warm one, side by side, each output
// checked against the origin; it keeps every round and each kind's
// fastest.
// cfg.ProfileDir is not used; an empty WorkDir is a temporary one.
func MeasureColdWarm(ctx context.Context, cfg Config) (*ColdWarm, error) {
	if cfg.Size <= 0 {
		return nil, fmt.Errorf("cold/warm measure: size %d", cfg.Size)
	}
	cfg.Runs = max(cfg.Runs, 1)
	b, err := newBed(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer b.close()
	c := &ColdWarm{Size: cfg.Size, Runs: cfg.Runs}
	for round := range cfg.Runs {
		url := b.originURL + "?coldwarm=" + strconv.Itoa(round)
		r, err := b.curl(ctx, cfg.WorkDir, url)
		if err != nil {
			return nil, err
		}
		c.Curl = best(c.Curl, r)
		rd := Round{Curl: r}
		for i, run := range []struct{ best, out *Run }{{&c.Cold, &rd.Cold}, {&c.Warm, &rd.Warm}} {
			// A new peer each time; 127.0.10-19 are Measure's.
			r, err := b.dfgetFile(ctx, &cfg, url, fmt.Sprintf("127.0.%d.%d", 40+round, 2+i))
			if err != nil {
				return nil, err
			}
			*run.best = best(*run.best, r)
			*run.out = r
		}
		c.Rounds = append(c.Rounds, rd)
		if err := b.forget(ctx, url); err != nil {
			return nil, err
		}
	}
	return c, nil
}
