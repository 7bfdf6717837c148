package dfgetbench

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestMeasure runs the measurement on a small file so the package stays
// working; the 1 GiB figures come from `make bench` or DFGETBENCH_SIZE.
func TestMeasure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := binDir(t)
	size := int64(64 << 20)
	if s := os.Getenv("DFGETBENCH_SIZE"); s != "" {
		n, err := parseSize(s)
		if err != nil || n <= 0 {
			t.Fatalf("DFGETBENCH_SIZE=%q: want bytes or N[M|G] (%v)", s, err)
		}
		size = n
	}
	runs := 1
	if n, err := strconv.Atoi(os.Getenv("DFGETBENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	f, err := Measure(ctx, Config{DfgetBin: filepath.Join(bin, "dfget"), SupernodeBin: filepath.Join(bin, "supernode"),
		Size: size, WorkDir: t.TempDir(), ProfileDir: os.Getenv("DFGETBENCH_PROFILE_DIR"), Runs: runs})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", f)
	if f.Stream.TTFB <= 0 || f.Stream.PeakRSS <= 0 {
		t.Fatalf("stream figures missing: %+v", f.Stream)
	}
	if len(f.Rounds) != runs || slices.ContainsFunc(f.Rounds, func(r Round) bool {
		return r.Curl.Wall <= 0 || r.CDN <= 0 || r.Cold.Wall <= 0 || r.Warm.Wall <= 0 || r.Stream.Wall <= 0 || r.Curl.CPU <= 0
	}) {
		t.Fatalf("rounds %+v, want %d with every run timed", f.Rounds, runs)
	}
}

// TestRoundsSpread checks that each target's figure pairs the runs of one
// round, and takes the median (of the middle two for an even count).
func TestRoundsSpread(t *testing.T) {
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	// Per round: cold/curl, warm/curl, stream/file throughput, CDN/curl
	// and cold CPU (with its peer server) over curl's.
	type want struct{ cold, warm, stream, cdn, cpu float64 }
	for _, c := range []struct {
		name   string
		rounds []want
		median want
		lo, hi want
	}{
		{name: "none"},
		{"one", []want{{1.1, 0.6, 0.9, 0.5, 0.7}}, want{1.1, 0.6, 0.9, 0.5, 0.7}, want{1.1, 0.6, 0.9, 0.5, 0.7}, want{1.1, 0.6, 0.9, 0.5, 0.7}},
		{"three", []want{{1.4, 0.5, 0.75, 0.6, 0.9}, {1.0, 0.7, 0.95, 0.4, 0.6}, {1.2, 0.6, 0.85, 0.5, 0.8}},
			want{1.2, 0.6, 0.85, 0.5, 0.8}, want{1.0, 0.5, 0.75, 0.4, 0.6}, want{1.4, 0.7, 0.95, 0.6, 0.9}},
		{"four", []want{{1.0, 0.5, 1.0, 0.4, 0.6}, {1.3, 0.8, 0.7, 0.7, 0.9}, {1.1, 0.6, 0.8, 0.5, 0.7}, {1.2, 0.7, 0.9, 0.6, 0.8}},
			want{1.15, 0.65, 0.85, 0.55, 0.75}, want{1.0, 0.5, 0.7, 0.4, 0.6}, want{1.3, 0.8, 1.0, 0.7, 0.9}},
	} {
		var rs Rounds
		for i, w := range c.rounds {
			// Each round's curl has its own time and CPU: a figure that
			// paired runs of different rounds would come out wrong.
			curl := 1 + float64(i)
			rs = append(rs, Round{Curl: Run{Wall: sec(curl), CPU: sec(2 * curl)},
				Cold:   Run{Wall: sec(w.cold * curl), CPU: sec(w.cpu * curl), ServerCPU: sec(w.cpu * curl)},
				Warm:   Run{Wall: sec(w.warm * curl)},
				Stream: Run{Wall: sec(w.warm * curl / w.stream)},
				CDN:    sec(w.cdn * curl)})
		}
		for _, g := range []struct {
			name           string
			got            Spread
			median, lo, hi float64
		}{
			{"Cold", rs.Cold(), c.median.cold, c.lo.cold, c.hi.cold},
			{"Warm", rs.Warm(), c.median.warm, c.lo.warm, c.hi.warm},
			{"Stream", rs.Stream(), c.median.stream, c.lo.stream, c.hi.stream},
			{"CDN", rs.CDN(), c.median.cdn, c.lo.cdn, c.hi.cdn},
			{"CPU", rs.CPU(func(r Round) Run { return r.Cold }), c.median.cpu, c.lo.cpu, c.hi.cpu},
		} {
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
			if !near(g.got.Median, g.median) || !near(g.got.Lo, g.lo) || !near(g.got.Hi, g.hi) {
				t.Errorf("%s: %s = %+v, want median %v (%v-%v)", c.name, g.name, g.got, g.median, g.lo, g.hi)
			}
		}
	}
}
