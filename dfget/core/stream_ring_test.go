package core

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
	"github.com/damselfly-p2p/damselfly/dfget/core/regist"
	"github.com/damselfly-p2p/damselfly/dfget/core/uploader"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

// ringDownload is a streaming Download whose peer server is at srv, with
// the stream cache registered there; it returns the ring the server named.
func ringDownload(t *testing.T, srv *httptest.Server, token string) (*Download, api.StreamRing) {
	t.Helper()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	log := logrus.New()
	log.SetOutput(io.Discard)
	d := &Download{cfg: &config.Config{TaskFileName: "stream-1"}, client: api.New(), log: log, localIP: "127.0.0.1",
		peerPort: port, reg: &regist.Result{Node: "127.0.0.1:1", Data: types.RegisterResponseData{TaskID: "T", PieceSize: 1 << 20}}}
	d.client.SetLocalToken(token)
	ring, err := d.client.RegisterStreamTask(context.Background(), "127.0.0.1", port, api.StreamTask{TaskFileName: "stream-1",
		TaskID: "T", CID: "C", PieceSize: 1 << 20, WindowSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	return d, ring
}

// A listener on the peer server's port (one that took it after the server
// was killed) names any file of the user as the stream ring: dfget writes
// nothing into it, and pushes the piece by HTTP.
func TestStreamPusherWritesOnlyIntoARing(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "authorized_keys")
	orig := []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA user@host\n")
	if err := os.WriteFile(victim, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	var bodies atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream/slot":
			_, _ = io.WriteString(w, "0")
		case "/stream/task":
			w.Header().Set(api.HeaderStreamRing, victim)
			w.Header().Set(api.HeaderStreamRingSlots, "2")
			_, _ = io.WriteString(w, "success")
		case "/stream/piece":
			if r.ContentLength > 0 {
				bodies.Add(1)
			}
			_, _ = io.WriteString(w, "success")
		}
	}))
	defer fake.Close()
	d, ring := ringDownload(t, fake, "tok")
	push, closeRing := d.streamPusher(ring)
	defer closeRing()
	push(context.Background(), &downloader.Piece{Num: 0, Wrapped: piece.Wrap(nil, []byte("bytes of the download"), 1<<20)})
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, orig) {
		t.Errorf("a file the peer server named as its ring was written: now %q", b)
	}
	if bodies.Load() != 1 {
		t.Errorf("%d pieces pushed by HTTP, want 1", bodies.Load())
	}
}

// A server that hands out a slot outside the ring it named gets neither a
// write nor a commit for it, and no more slot requests: the stream's
// pieces go by HTTP.
func TestStreamPusherRefusesSlotOutsideRing(t *testing.T) {
	dir := t.TempDir()
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	s := uploader.NewServer(uploader.ServerConfig{IP: "127.0.0.1", Token: "tok", DataDir: dir, ExpireTime: time.Minute,
		AliveTime: time.Minute}, quiet)
	h := s.Handler()
	var slots, commits atomic.Int32
	var ringSlots atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/stream/slot":
			slots.Add(1)
			_, _ = io.WriteString(w, strconv.FormatInt(ringSlots.Load(), 10)) // one past the last
			return
		case r.URL.Path == "/stream/piece" && r.Header.Get(api.HeaderStreamSlot) != "":
			commits.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	d, ring := ringDownload(t, srv, "tok")
	if ring.Path == "" {
		imagetest.Unavailable(t, "the server has no ring here")
	}
	ringSlots.Store(int64(ring.Slots))
	push, closeRing := d.streamPusher(ring)
	defer closeRing()
	for i := 0; i < 3; i++ {
		push(context.Background(), &downloader.Piece{Num: i, Wrapped: piece.Wrap(nil, []byte("piece"), 1<<20)})
	}
	if slots.Load() != 1 || commits.Load() != 0 {
		t.Errorf("%d slot requests and %d commits after a slot outside the ring, want 1 and 0", slots.Load(), commits.Load())
	}
	// The pieces reached the cache by HTTP.
	r := httptest.NewRequest("GET", "/peer/file/stream-1", nil)
	r.Header.Set("Range", "bytes="+piece.Range(2, 1<<20, -1))
	r.Header.Set(api.HeaderPieceNum, "2")
	r.Header.Set(api.HeaderPieceSize, strconv.Itoa(1<<20))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusPartialContent {
		t.Errorf("piece 2 from the cache: %d %s", w.Code, w.Body)
	}
}
