// Package shutdown names the signals on which a damselfly command stops
// cleanly (removing its temp files, reporting its state) instead of dying
// where the signal finds it.
package shutdown

import (
	"os"
	"os/signal"
	"syscall"
)

// Signals are SIGINT, SIGTERM and SIGHUP: the hangup of the terminal or
// session a command runs in is as much a request to stop as Ctrl-C, and
// its default action would kill the process with its temp files in place.
// SIGHUP is left out when the process started with it ignored (nohup):
// asking to be notified of it would undo that.
func Signals() []os.Signal {
	sigs := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}
