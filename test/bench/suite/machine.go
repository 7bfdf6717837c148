package suite

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/fileio"
	"github.com/damselfly-p2p/damselfly/test/bench/report"
)

// pageProbeSize is written to a new file to time new page-cache pages.
const pageProbeSize = 256 << 20

// pageCost is what one probe measured: writing pageProbeSize bytes to a new
// file, per GiB.
type pageCost struct {
	wall, sys time.Duration
}

func (p pageCost) String() string {
	return fmt.Sprintf("%.2f s/GiB (system CPU %.2f s/GiB)", p.wall.Seconds()*gib/pageProbeSize, p.sys.Seconds()*gib/pageProbeSize)
}

const gib = 1 << 30

// probePages times writing pageProbeSize bytes to a new file in dir, which it
// removes, in writes of fileio.Chunk as dfget and the CDN write. Every
// download in the bench writes its output (and a supernode its cache) into
// new page-cache pages, and what a new page costs is a property of the
// machine that moves the cold rows most: on a VM whose kernel reports freed
// pages back to the host (virtio-balloon free page reporting), each page
// taken again is faulted in by the host ("Where the time goes" in
// docs/benchmarks.md). On this machine a first probe with 4 MiB writes
// took 2.54 s/GiB of system time, and 0.16 s/GiB at once after, into the
// pages it had just freed. A cold download writes two copies (the CDN's
// and the output) where curl writes one, so their ratio moves with this.
func probePages(dir string) (pageCost, error) {
	// One OS thread, so its system time is the write's alone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.CreateTemp(dir, "bench-pages-*")
	if err != nil {
		return pageCost{}, fmt.Errorf("page probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, fileio.Chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &before)
	start := time.Now()
	for n := 0; n < pageProbeSize; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return pageCost{}, fmt.Errorf("page probe: %w", err)
		}
	}
	wall := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &after)
	return pageCost{wall: wall, sys: time.Duration(after.Stime.Nano() - before.Stime.Nano())}, nil
}

// machineLine adds one page probe to s, named when.
func machineLine(s *report.Section, when string) {
	p, err := probePages(os.TempDir())
	if err != nil {
		s.Add(when, "%v", err)
		return
	}
	s.Add(when, "%s", p)
}

// machineSection is the report's first section: what new memory costs on
// this machine at the start; Run adds the same probe at the end, since the
// cost moves while the bench runs.
func machineSection() report.Section {
	s := report.Section{Title: fmt.Sprintf("Machine: writing %d MiB to a new file in %d KiB writes (new page-cache pages; no fsync)",
		pageProbeSize>>20, fileio.Chunk>>10)}
	machineLine(&s, "at the start")
	machineLine(&s, "again at once, into the pages just freed")
	return s
}
