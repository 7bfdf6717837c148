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
	if len(f.StreamRounds) != runs || slices.ContainsFunc(f.StreamRounds, func(r float64) bool { return r <= 0 }) {
		t.Fatalf("per-round stream ratios %v, want %d positive ones", f.StreamRounds, runs)
	}
}

func TestStreamSpread(t *testing.T) {
	for _, c := range []struct {
		rounds         []float64
		median, lo, hi float64
	}{
		{nil, 0, 0, 0},
		{[]float64{0.9}, 0.9, 0.9, 0.9},
		{[]float64{0.95, 0.75, 0.85}, 0.85, 0.75, 0.95},
		{[]float64{1.0, 0.7, 0.8, 0.9}, 0.85, 0.7, 1.0},
	} {
		f := Figures{StreamRounds: c.rounds}
		m, lo, hi := f.StreamSpread()
		if math.Abs(m-c.median) > 1e-9 || lo != c.lo || hi != c.hi {
			t.Errorf("StreamSpread(%v) = %v, %v, %v; want %v, %v, %v", c.rounds, m, lo, hi, c.median, c.lo, c.hi)
		}
	}
}
