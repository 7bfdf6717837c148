package dfgetbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/damselfly-p2p/damselfly/test/bench/cdnbench"
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
}

// ColdRatio is cold dfget time over curl time (target <= 1.3).
func (c *ColdWarm) ColdRatio() float64 { return ratio(c.Cold.Wall, c.Curl.Wall) }

// WarmRatio is warm dfget time over curl time (target <= 1.10).
func (c *ColdWarm) WarmRatio() float64 { return ratio(c.Warm.Wall, c.Curl.Wall) }

// MeasureColdWarm starts an origin and a supernode and runs cfg.Runs
// rounds of curl, a cold dfget and a warm one, side by side, each output
// checked against the origin; each figure is the fastest round.
// cfg.ProfileDir is not used; an empty WorkDir is a temporary one.
func MeasureColdWarm(ctx context.Context, cfg Config) (*ColdWarm, error) {
	if cfg.Size <= 0 {
		return nil, fmt.Errorf("cold/warm measure: size %d", cfg.Size)
	}
	cfg.Runs = max(cfg.Runs, 1)
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "dfgetbench-coldwarm-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	}
	src := filepath.Join(cfg.WorkDir, "origin.bin")
	sum, _, err := writeRandom(src, cfg.Size)
	if err != nil {
		return nil, err
	}
	originURL, stopOrigin, err := serveOrigin(src)
	if err != nil {
		return nil, err
	}
	defer stopOrigin()
	sn, err := cdnbench.StartSupernode(ctx, cfg.SupernodeBin, filepath.Join(cfg.WorkDir, "sn"))
	if err != nil {
		return nil, err
	}
	defer sn.Stop()
	var homes []string
	defer func() {
		for _, h := range homes {
			killServer(h)
		}
	}()
	c := &ColdWarm{Size: cfg.Size, Runs: cfg.Runs}
	for round := range cfg.Runs {
		url := originURL + "?coldwarm=" + strconv.Itoa(round)
		curlOut := filepath.Join(cfg.WorkDir, "curl.out")
		r, err := timed(ctx, nil, "curl", "-sS", "-f", "-o", curlOut, url)
		if err != nil {
			return nil, fmt.Errorf("curl: %w", err)
		}
		if err := checkAndRemove(curlOut, sum); err != nil {
			return nil, err
		}
		c.Curl = best(c.Curl, r)
		for i, run := range []*Run{&c.Cold, &c.Warm} {
			// A new peer (own IP and home) each time; 127.0.10-19 are Measure's.
			ip := fmt.Sprintf("127.0.%d.%d", 40+round, 2+i)
			home := filepath.Join(cfg.WorkDir, "home-"+ip)
			homes = append(homes, home)
			out := filepath.Join(cfg.WorkDir, "out-"+ip)
			r, err := timed(ctx, nil, cfg.DfgetBin, "-u", url, "-o", out, "--node", sn.Addr, "--ip", ip,
				"--home", home, "--notbs", "--config", "/nonexistent", "--alivetime", "60s")
			if err != nil {
				return nil, err
			}
			r.ServerCPU = serverCPU(home)
			if err := checkAndRemove(out, sum); err != nil {
				return nil, err
			}
			*run = best(*run, r)
		}
	}
	return c, nil
}

// checkAndRemove checks a download's output against the origin's md5 and
// removes it, so the next run finds the page cache and disk as before.
func checkAndRemove(path, sum string) error {
	err := checkFile(path, sum)
	if rerr := os.Remove(path); err == nil && rerr != nil {
		err = fmt.Errorf("remove output: %w", rerr)
	}
	return err
}
