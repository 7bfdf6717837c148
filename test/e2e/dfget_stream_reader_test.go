package e2e

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A reader that stops reading: --timeout ends dfget (non-zero) a few
// seconds after its deadline, where it waited for the stuck write to
// stdout for good.
func TestDfgetStreamStalledReaderEndsAtTimeout(t *testing.T) {
	o := newOrigin(t)
	url := o.add("/stall.bin", randomData(48<<20, 27))
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t, "dfget"), p.args(sn, "--stream", "-u", url, "--notbs", "--timeout", "8s")...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, out, 1<<20); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		d := time.Since(t0)
		t.Logf("dfget ended after %v: %v", d, err)
		if err == nil {
			t.Errorf("dfget exit 0 with its reader stalled")
		}
		if !strings.Contains(errb.String(), "stdout not read for") {
			t.Errorf("stderr does not say stdout was not read:\n%s", errb.String())
		}
	case <-time.After(25 * time.Second):
		t.Errorf("dfget still running %v after it started, --timeout 8s", time.Since(t0))
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		<-done
		t.Logf("stderr:\n%s", errb.String())
	}
}

// A stream whose reader pauses gives pieces back (its window is full):
// the peer holding them was never asked for them and must stay a holder
// the stream gets pieces from, not be blacklisted for it.
func TestDfgetStreamSlowReaderBlamesNoHolder(t *testing.T) {
	o := newOrigin(t)
	data := randomData(48<<20, 28)
	url := o.add("/slow.bin", data)
	sn := startSupernode(t, t.TempDir())
	a := newDfgetPeer(t, "127.0.0.3")
	if r := a.run(sn, "-u", url, "-o", t.TempDir()+"/a.bin", "--notbs"); r.code != 0 {
		t.Fatalf("a: %d %s", r.code, r.stderr)
	}
	p := newDfgetPeer(t, "127.0.0.2")
	r := p.stream(sn, func(r io.Reader) {
		_, _ = io.CopyN(io.Discard, r, 1<<20)
		time.Sleep(12 * time.Second)
	}, "-u", url, "--notbs", "--window-size", "2", "--verbose")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// Give-backs happen from when the reader pauses: the pieces fetched
	// after the first one still come from peer a, which holds them all.
	log := p.clientLog()
	i := strings.Index(log, "result=500")
	if i < 0 {
		t.Fatalf("no piece given back: the reader's pause did not fill the window\n%s", log)
	}
	after := log[i:]
	fromA, fromSuper := strings.Count(after, "from 127.0.0.3:"), strings.Count(after, "from 127.0.0.1:")
	t.Logf("give-backs %d; after the first, pieces from peer a: %d, from the supernode: %d",
		strings.Count(log, "result=500"), fromA, fromSuper)
	if fromA < fromSuper {
		t.Errorf("peer a was blamed for the stream's give-backs: the stream took %d pieces from the supernode and %d from a\n%s",
			fromSuper, fromA, log)
	}
}
