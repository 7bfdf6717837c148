package core

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// The peer server dies mid-download and another local user takes its
// port: the next keepalive check finds no proof, and from then on no
// control call (rate, finish, stream cache) goes to the port with the
// token, nor is answered by what holds it.
func TestKeepAliveDropsServerThatStopsProving(t *testing.T) {
	var checks, others, tokens atomic.Int32
	imp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(api.HeaderLocalToken) != "" {
			tokens.Add(1)
		}
		if name, ok := strings.CutPrefix(r.URL.Path, "/check/"); ok {
			checks.Add(1)
			_, _ = io.WriteString(w, name+"@"+version.Version)
			return
		}
		others.Add(1)
		_, _ = io.WriteString(w, "1")
	}))
	defer imp.Close()
	log, hook := logtest.NewNullLogger()
	d := &Download{cfg: &config.Config{TaskFileName: "f-1", AliveTime: time.Second}, client: api.New(), log: log,
		localIP: "127.0.0.1", peerPort: imp.Listener.Addr().(*net.TCPAddr).Port}
	d.client.SetLocalToken("token-of-the-dead-server")
	stop := d.keepAlive(context.Background())
	// The warning comes after the keepalive's reaction to the check.
	for i := 0; hook.LastEntry() == nil && i < 300; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if checks.Load() == 0 || hook.LastEntry() == nil {
		t.Fatalf("no keepalive check failed within 3s (%d checks)", checks.Load())
	}
	if _, err := d.client.FairRate(context.Background(), d.localIP, d.peerPort, "f-1", 10); !errors.Is(err, api.ErrServerUnproven) {
		t.Errorf("rate call after the failed proof: %v", err)
	}
	if n := others.Load(); n != 0 {
		t.Errorf("%d control calls reached the listener after its check failed", n)
	}
	if n := tokens.Load(); n != 0 {
		t.Errorf("%d calls carried the token", n)
	}
}
