package dfgetbench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/test/bench/cdnbench"
	"github.com/damselfly-p2p/damselfly/test/procmem"
)

// bed is what a measurement runs against: a random file served by a
// loopback origin, a supernode, and the homes of the dfgets run, whose
// peer servers are ended on close.
type bed struct {
	sum       string // md5 of the file
	crc       uint32 // crc32 of the file
	originURL string
	node      string // the supernode's address
	snPid     int    // the supernode's process
	homes     []string
	closers   []func() // run last first
}

// newBed writes a cfg.Size random file in cfg.WorkDir (a temporary one,
// removed on close, when empty) and starts the origin and the supernode.
func newBed(ctx context.Context, cfg *Config) (b *bed, err error) {
	b = &bed{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "dfgetbench-")
		if err != nil {
			return nil, err
		}
		b.closers = append(b.closers, func() { os.RemoveAll(d) })
		cfg.WorkDir = d
	}
	src := filepath.Join(cfg.WorkDir, "origin.bin")
	if b.sum, b.crc, err = writeRandom(src, cfg.Size); err != nil {
		return nil, err
	}
	url, stopOrigin, err := serveOrigin(src)
	if err != nil {
		return nil, err
	}
	b.originURL = url
	b.closers = append(b.closers, stopOrigin)
	sn, err := cdnbench.StartSupernode(ctx, cfg.SupernodeBin, filepath.Join(cfg.WorkDir, "sn"))
	if err != nil {
		return nil, err
	}
	b.node, b.snPid = sn.Addr, sn.Pid()
	b.closers = append(b.closers, sn.Stop)
	return b, nil
}

// home is the dfget home for a peer of address ip, its peer server ended
// on close.
func (b *bed) home(dir, ip string) string {
	h := filepath.Join(dir, "home-"+ip)
	b.homes = append(b.homes, h)
	return h
}

// close ends the peer servers, then the supernode and the origin, then
// removes a temporary work dir.
func (b *bed) close() {
	for _, h := range b.homes {
		killServer(h)
	}
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// curl times `curl -o` of url into dir and checks the output.
func (b *bed) curl(ctx context.Context, dir, url string) (Run, error) {
	out := filepath.Join(dir, "curl.out")
	r, err := timed(ctx, nil, "curl", "-sS", "-f", "-o", out, url)
	if err != nil {
		return r, fmt.Errorf("curl: %w", err)
	}
	return r, checkAndRemove(out, b.sum)
}

// dfgetFile times a file-mode dfget of url by a new peer at ip (its own
// home under cfg.WorkDir) with extra flags, and checks the output; the
// run's ServerCPU is its peer server's so far.
func (b *bed) dfgetFile(ctx context.Context, cfg *Config, url, ip string, extra ...string) (Run, error) {
	home := b.home(cfg.WorkDir, ip)
	out := filepath.Join(cfg.WorkDir, "out-"+ip)
	snUser0, snSys0 := procmem.Times(b.snPid)
	r, err := timed(ctx, nil, cfg.DfgetBin, append([]string{"-u", url, "-o", out, "--node", b.node, "--ip", ip,
		"--home", home, "--notbs", "--config", "/dev/null", "--alivetime", "60s"}, extra...)...)
	if err != nil {
		return r, err
	}
	snUser, snSys := procmem.Times(b.snPid)
	r.ServerCPU, r.SupernodeCPU, r.SupernodeSys = serverCPU(home), snUser+snSys-snUser0-snSys0, snSys-snSys0
	b.retire(home)
	return r, checkAndRemove(out, b.sum)
}

// retire ends the peer server of home and removes the home, whose data
// directory holds a second link to the download. Left running, that server
// served the next dfget of the round every piece, so the "warm" row timed
// a download from a peer, not from the CDN; and the link kept the file's
// page cache, so the next run had to take new pages where curl's took the
// ones its predecessor had just freed (see probePages in test/bench/suite).
func (b *bed) retire(home string) {
	killServer(home)
	_ = os.RemoveAll(home)
	b.homes = slices.DeleteFunc(b.homes, func(h string) bool { return h == home })
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

// forget has the supernode drop url's task and its cache file, as its
// garbage collector does, so every round starts from a supernode holding
// no earlier round's task, and the bench keeps one cached copy on disk, not
// one per round. Kept copies handicapped every round after the second: on
// the benchmark VM, page cache that grows past what was freed a moment
// before costs about 3 s of system time per GiB (docs/benchmarks.md,
// session 9), and curl's output is deleted each round. It checks that the
// task is gone: as in v1, the supernode answers GET of an unknown task
// with HTTP 500, and that is its only error for the route.
func (b *bed) forget(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id := taskid.ID(url, "", "", nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+b.node+"/api/v1/tasks/"+id+"?full=true", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("delete task %s: %w", id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("delete task %s: HTTP %d", id, resp.StatusCode)
	}
	if _, err := api.New().TaskInfo(ctx, b.node, id); err == nil || !strings.HasSuffix(err.Error(), "HTTP 500") {
		return fmt.Errorf("task %s after its delete: want HTTP 500, got %v", id, err)
	}
	return nil
}
