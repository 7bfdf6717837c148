package dfgetbench

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestMeasureColdWarm keeps the second-size rows working on a small file.
func TestMeasureColdWarm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := binDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := MeasureColdWarm(ctx, Config{DfgetBin: filepath.Join(bin, "dfget"), SupernodeBin: filepath.Join(bin, "supernode"),
		Size: 16<<20 + 5, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("curl %v, cold %v (%.2fx), warm %v (%.2fx)", c.Curl.Wall, c.Cold.Wall, c.ColdRatio(), c.Warm.Wall, c.WarmRatio())
	if c.Curl.Wall <= 0 || c.Cold.Wall <= 0 || c.Warm.Wall <= 0 || c.Cold.CPU <= 0 {
		t.Fatalf("figures missing: %+v", c)
	}
	if _, err := MeasureColdWarm(ctx, Config{WorkDir: t.TempDir()}); err == nil {
		t.Error("no size: no error")
	}
}

// binDir is DAMSELFLY_BIN, else the repository's bin, holding dfget and
// supernode.
func binDir(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DAMSELFLY_BIN")
	if bin == "" {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(file), "..", "..", "..", "bin")
	}
	for _, b := range []string{"dfget", "supernode"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("binary %s missing (run make build): %v", b, err)
		}
	}
	return bin
}
