// Package peer runs the host's peer server inside the dfdaemon process:
// the same server `dfget server` runs, recorded in the work home's
// host.meta so the stream downloads of this dfdaemon, and any dfget of
// the host sharing the work home, use it instead of spawning one. Its
// life is the dfdaemon's (no idle exit): a long-running service under
// systemd, and no second process to find, start or reap.
package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/uploader"
)

// Server is a running in-process peer server.
type Server struct {
	Port int
	done chan error
}

// Start listens on ip:port (port 0: the first free of dfget's candidate
// ports) and serves the work home's files and stream caches until ctx
// ends. It returns once host.meta names the server.
func Start(ctx context.Context, home, ip string, port int, log *logrus.Logger) (*Server, error) {
	paths := dfgetcfg.Config{Home: home}
	l, err := uploader.Listen(ip, port)
	if err != nil {
		return nil, err
	}
	srv := uploader.NewServer(uploader.ServerConfig{IP: ip, MetaPath: paths.MetaPath(), DataDir: paths.DataDir(),
		ExpireTime: dfgetcfg.DefaultExpireTime}, log)
	s := &Server{Port: l.Addr().(*net.TCPAddr).Port, done: make(chan error, 1)}
	go func() { s.done <- srv.Run(ctx, l, io.Discard) }()
	deadline := time.Now().Add(5 * time.Second)
	for uploader.ReadMeta(paths.MetaPath()).ServicePort != s.Port {
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("peer server: %w", errors.Join(err, errors.New("stopped at start")))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("peer server did not record its port within 5s")
		}
	}
	return s, nil
}

// Wait returns once the server stopped (after ctx ended: it reports its
// tasks' service down and removes their files first).
func (s *Server) Wait() error { return <-s.done }
