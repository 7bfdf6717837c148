package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// A hangup (the session that started a daemon ends) stops the supernode
// and dfdaemon as SIGTERM does: a clean exit after their shutdown, not
// death by the signal.
func TestDaemonsStopCleanlyOnHangup(t *testing.T) {
	sn := startSupernode(t, t.TempDir())
	d := startDfdaemon(t, "127.0.0.1:1", nil)
	for _, p := range []*Proc{sn.Proc, d.Proc} {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(15 * time.Second); err != nil {
			t.Errorf("%s after SIGHUP: %v, want a clean exit", p.Name, err)
		}
	}
	if log := sn.Tail(4000); !strings.Contains(log, "stopped") {
		t.Errorf("supernode log has no clean stop:\n%s", log)
	}
}
