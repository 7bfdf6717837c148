package peer

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/sirupsen/logrus"

	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/uploader"
)

func TestStartRecordsPortAndStopsWithContext(t *testing.T) {
	home := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, home, "127.0.0.1", 0, log)
	if err != nil {
		t.Fatal(err)
	}
	meta := (&dfgetcfg.Config{Home: home}).MetaPath()
	if p := uploader.ReadMeta(meta).ServicePort; p != s.Port {
		t.Fatalf("host.meta names port %d, the server listens on %d", p, s.Port)
	}
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(s.Port) + "/server/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ping: %d", resp.StatusCode)
	}
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if p := uploader.ReadMeta(meta).ServicePort; p != 0 {
		t.Fatalf("host.meta still names port %d after the stop", p)
	}
}
