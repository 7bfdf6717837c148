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
	go func() {
		time.Sleep(20 * time.Millisecond)
		d.cdnDone(cdn.Result{Err: errors.New("write piece 0 of t: no space left on device")})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := d.m.Wait(ctx, id); err != nil || st != types.CDNStatusFailed {
		t.Fatalf("wait: %s %v", st, err)
	}
	if info, err := d.m.Info(id); err != nil || info.CdnStatus != types.CDNStatusFailed {
		t.Fatalf("info: %+v %v", info, err)
	}
}
