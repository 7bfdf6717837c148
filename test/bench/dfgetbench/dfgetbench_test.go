package dfgetbench

import (
	"context"
	"os"
	"path/filepath"
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
}
