package task

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

// A CDN that ends failed (a cache write error, say) puts its task in
// FAILED and wakes whoever waits on it at once; the task API shows it.
func TestFailedCDNFailsTheTask(t *testing.T) {
	d := newDeps(t)
	id := running(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type waited struct {
		st  string
		err error
	}
	got := make(chan waited, 1)
	go func() {
		st, err := d.m.Wait(ctx, id)
		got <- waited{st, err}
	}()
	// The CDN ends only once Wait is parked on the running task, so what
	// is tested is the wake-up, not a status read before the wait.
	for d.m.waiting.Load() == 0 {
		select {
		case w := <-got:
			t.Fatalf("Wait returned %s %v before the CDN ended", w.st, w.err)
		case <-time.After(time.Millisecond):
		}
	}
	d.cdnDone(cdn.Result{Err: errors.New("write piece 0 of t: no space left on device")})
	if w := <-got; w.err != nil || w.st != types.CDNStatusFailed {
		t.Fatalf("wait: %s %v", w.st, w.err)
	}
	if info, err := d.m.Info(id); err != nil || info.CdnStatus != types.CDNStatusFailed {
		t.Fatalf("info: %+v %v", info, err)
	}
}
