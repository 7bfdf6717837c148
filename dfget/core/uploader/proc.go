package uploader

import (
	"bytes"
	"os"
	"strconv"
)

// proc names a process by its ID and start time, so that a recycled PID is
// not taken for the process that had it. The zero value is unknown.
type proc struct {
	pid   int
	start uint64 // clock ticks after boot (/proc/<pid>/stat field 22)
}

// procOf returns pid's proc; unknown if it cannot be read (it may be gone,
// or in another PID namespace).
func procOf(pid int) proc {
	start, ok := procStart(pid)
	if !ok {
		return proc{}
	}
	return proc{pid: pid, start: start}
}

// alive reports that the process still runs. An unknown process counts as
// alive: only one seen and then seen gone is gone.
func (p proc) alive() bool {
	if p.pid == 0 {
		return true
	}
	start, ok := procStart(p.pid)
	return ok && start == p.start
}

func procStart(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields from the last ')'. Field 3 is the state; the start time is 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || string(f[0]) == "Z" {
		return 0, false // a zombie has exited
	}
	v, err := strconv.ParseUint(string(f[19]), 10, 64)
	return v, err == nil
}
