package swarm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/dfget/core/regist"
)

// warmTimeout bounds one warm: the HEAD, the registration and the
// service-down.
const warmTimeout = 30 * time.Second

// warmMemory is how long a warmed blob is not warmed again by this
// dfdaemon: engines fetch a manifest several times per pull.
const warmMemory = 10 * time.Minute

// Warm starts the supernode's CDN fill of a content-addressed blob
// without downloading it: a registration as the cdn pattern (never a
// holder, never scheduled), dropped again at once. Engines such as skopeo
// fetch an image's layers one after another; each layer's CDN fill
// starting only when the first host asks for it makes a pull the sum of
// the per-layer fills and the lags between them. Warmed when the
// manifest passes, every layer's fill starts at once and the registry's
// link stays busy. The client's headers go along as a stream's do, and
// the blob is warmed only if the source answers their HEAD with 200, so
// a client that may not read a blob cannot make the CDN fetch it. Warm
// returns when the registration is done; errors are only logged (a cold
// layer still streams).
func (s *Swarm) Warm(ctx context.Context, r *http.Request, src Source, id Identity) {
	if id.Digest == "" || !ValidDigest(id.Digest) || !s.claimWarm(id.Digest) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	if err := s.warm(ctx, r, src, id); err != nil {
		s.unclaimWarm(id.Digest)
		s.log.Infof("warm %s: %v", id.Digest, err)
		return
	}
	s.m.Warmed.Inc()
}

func (s *Swarm) warm(ctx context.Context, r *http.Request, src Source, id Identity) error {
	head, err := s.head(ctx, r, src)
	if err != nil {
		return err
	}
	if head.StatusCode != http.StatusOK || head.ContentLength == 0 {
		return fmt.Errorf("source answers HEAD with %d, length %d", head.StatusCode, head.ContentLength)
	}
	cfg, err := s.config(r, src, id)
	if err != nil {
		return err
	}
	cfg.Stream, cfg.Pattern = false, dfgetcfg.PatternCDN
	c := api.New()
	if err := c.SecureNodes(cfg.NodeToken, cfg.NodeCACerts); err != nil {
		return err
	}
	nodes, _ := regist.Order(ctx, cfg, net.DefaultResolver)
	ip := cfg.IP
	if ip == "" {
		if ip, err = regist.LocalIP(ctx, nodes); err != nil {
			return err
		}
	}
	cas, err := readFiles(cfg.CACerts)
	if err != nil {
		return err
	}
	cid := ip + "-warm-" + cfg.Sign
	reg, err := regist.Register(ctx, c, cfg, nodes, regist.Request{CID: cid, IP: ip, RootCAs: cas})
	if err != nil {
		return err
	}
	// The registration started the fill; the client itself has nothing
	// to download. Its own peer record goes down, no other.
	return c.ReportServiceDown(ctx, reg.Node, reg.Data.TaskID, cid)
}

// claimWarm reports whether digest was not warmed within warmMemory, and
// marks it warmed.
func (s *Swarm) claimWarm(digest string) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, at := range s.warmed {
		if now.Sub(at) > warmMemory {
			delete(s.warmed, d)
		}
	}
	if _, ok := s.warmed[digest]; ok {
		return false
	}
	s.warmed[digest] = now
	return true
}

func (s *Swarm) unclaimWarm(digest string) {
	s.mu.Lock()
	delete(s.warmed, digest)
	s.mu.Unlock()
}

// readFiles reads every file of names (PEM CA certificates).
func readFiles(names []string) ([][]byte, error) {
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", n, err)
		}
		out = append(out, b)
	}
	return out, nil
}
