package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerRE finds the owning pid in a run's names ("dmf<pid>-...").
var ownerRE = regexp.MustCompile(`dmf([0-9]+)-`)

// ownerPid returns the pid that created name, if name is one of ours.
func ownerPid(name string) (int, bool) {
	m := ownerRE.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.Atoi(m[1])
	return pid, err == nil && pid > 0
}

// alive reports whether a process with that pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// sweepStale removes what runs whose process is gone left behind:
// processes, namespaces, links and run directories under base.
func sweepStale(ctx context.Context, base string) {
	_ = withLock(func() error {
		dead := func(name string) bool {
			pid, ok := ownerPid(name)
			return ok && pid != os.Getpid() && !alive(pid)
		}
		out, _ := exec.CommandContext(ctx, "ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !dead(f[0]) {
				continue
			}
			killPids(namespacePids(ctx, f[0]))
			_ = ip(ctx, "netns", "del", f[0])
		}
		entries, _ := os.ReadDir("/sys/class/net")
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), "dmf") {
				continue
			}
			alias, err := os.ReadFile(filepath.Join("/sys/class/net", e.Name(), "ifalias"))
			if err == nil && dead(string(bytes.TrimSpace(alias))+"-") {
				_ = ip(ctx, "link", "del", e.Name())
			}
		}
		killPids(pidsMatching(func(cmdline string) bool {
			for _, m := range ownerRE.FindAllString(cmdline, -1) {
				if dead(m) {
					return true
				}
			}
			return false
		}))
		dirs, _ := filepath.Glob(filepath.Join(base, "dmf*-*"))
		// Hosts files of namespaces (SetHostsFile) are named like them.
		etc, _ := filepath.Glob("/etc/netns/dmf*-*")
		dirs = append(dirs, etc...)
		for _, d := range dirs {
			if dead(filepath.Base(d)) {
				_ = os.RemoveAll(d)
			}
		}
		return nil
	})
}

// pidsReferencing lists processes whose command line mentions dir (the
// peer servers dfget spawns detached carry their --home in it).
func pidsReferencing(dir string) []int {
	return pidsMatching(func(cmdline string) bool { return strings.Contains(cmdline, dir) })
}

func pidsMatching(match func(cmdline string) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid <= 1 {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killPids sends SIGKILL to each pid and waits (bounded) until they are
// gone, so that namespaces and files can be removed after.
func killPids(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for time.Now().Before(deadline) {
			if _, err := os.Stat("/proc/" + strconv.Itoa(p)); err != nil {
				break
			}
			if st, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat"); err == nil && zombie(st) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// zombie reads the state field of /proc/<pid>/stat.
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
