package downloader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
)

// A cancel that ends the idle workers before a 601 queues its piece does
// not leave Run waiting for a fetch no worker will run.
func TestPullLoopCancelWithIdleWorkers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sn := NewMockSupernode(gomock.NewController(t))
	var mu sync.Mutex
	pulls := 0
	sn.EXPECT().PullPieceTask(gomock.Any(), "node", gomock.Any()).DoAndReturn(
		func(context.Context, string, api.PullRequest) (*api.Envelope, error) {
			mu.Lock()
			pulls++
			n := pulls
			mu.Unlock()
			if n > 1 {
				cancel()
				waitNoFetchWorker(t)
			}
			data, _ := json.Marshal([]types.PieceInfo{info(n - 1)})
			return &api.Envelope{Code: types.CodePeerContinue, Data: data}, nil
		}).AnyTimes()
	sn.EXPECT().ReportPieceSuccess(gomock.Any(), "node", "task", "me", gomock.Any(), gomock.Any(), gomock.Any()).Return(nil).AnyTimes()
	l := loopFor(sn, &holders{})
	l.MaxFetch = 1
	done := make(chan error, 1)
	go func() {
		_, err := l.Run(ctx)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of the cancel")
	}
}

// waitNoFetchWorker waits until no fetch worker of any pull loop runs.
func waitNoFetchWorker(t *testing.T) {
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*pullState).fetchWorker")) {
			return
		}
	}
	t.Error("a fetch worker still runs a second after the cancel")
}
