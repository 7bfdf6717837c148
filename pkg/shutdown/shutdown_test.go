package shutdown

import (
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"
)

func TestSignalsIncludeHangupUnlessIgnored(t *testing.T) {
	if s := Signals(); !slices.Contains(s, os.Signal(syscall.SIGHUP)) || !slices.Contains(s, os.Signal(syscall.SIGTERM)) ||
		!slices.Contains(s, os.Signal(syscall.SIGINT)) {
		t.Fatalf("signals %v", s)
	}
	signal.Ignore(syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	if s := Signals(); slices.Contains(s, os.Signal(syscall.SIGHUP)) {
		t.Fatalf("SIGHUP is ignored (nohup) but listed: %v", s)
	}
}
