// Package procmem reads a process's peak resident memory (VmHWM) and CPU
// time from /proc, for the benchmarks' and the demo's RSS and CPU columns.
//
// rusage's ru_maxrss cannot be used for that: Go starts children with
// vfork semantics (CLONE_VM), and at exec the kernel folds the parent's own
// peak RSS into the child's ru_maxrss, so every child of a large benchmark
// process reported at least the benchmark's size (a 2 GiB bench made curl
// look 1.9 GiB). VmHWM belongs to the child's own address space.
package procmem

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PeakRSS is pid's peak resident set size in bytes (VmHWM).
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("peak rss of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak rss of %d: VmHWM %q: %w", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("peak rss of %d: no VmHWM (exited?)", pid)
}

// SampleEvery is how often Watch reads VmHWM.
const SampleEvery = 20 * time.Millisecond

// Watch samples pid's VmHWM every SampleEvery until stop is called; stop
// returns the largest reading (VmHWM only grows, so it is the last one
// taken before the process exited; growth in its final SampleEvery is
// missed), 0 if none succeeded.
func Watch(pid int) (stop func() int64) {
	var (
		mu   sync.Mutex
		peak int64
	)
	sample := func() {
		if v, err := PeakRSS(pid); err == nil {
			mu.Lock()
			peak = max(peak, v)
			mu.Unlock()
		}
	}
	sample()
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(SampleEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	var once sync.Once
	return func() int64 {
		once.Do(func() { close(quit); <-done })
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// CPU is running process pid's user plus system time so far (its own, not
// its children's), 0 if it cannot be read.
func CPU(pid int) time.Duration {
	u, s := Times(pid)
	return u + s
}

// Times is running process pid's user and system time so far (its own, not
// its children's), 0 and 0 if they cannot be read.
func Times(pid int) (user, sys time.Duration) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the parenthesised command name, which may hold spaces:
	// state is the first, utime and stime the 12th and 13th.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, 0
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0, 0
	}
	ut, uerr := strconv.ParseInt(fields[11], 10, 64)
	st, serr := strconv.ParseInt(fields[12], 10, 64)
	if uerr != nil || serr != nil {
		return 0, 0
	}
	return time.Duration(ut) * time.Second / clockTicks, time.Duration(st) * time.Second / clockTicks
}
