package swarm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/dfget/core/regist"
)

// warmTimeout bounds one warm: the HEAD, the registration and the
// service-down.
const warmTimeout = 30 * time.Second

// fillWait bounds how long Warm waits for the fill it started, and
// fillPoll is how often it asks the supernode.
const (
	fillWait = 5 * time.Minute
	fillPoll = 100 * time.Millisecond
)

// warmMemory is how long a warmed blob is not warmed again by this
// dfdaemon: engines fetch a manifest several times per pull.
const warmMemory = 10 * time.Minute

// Warm starts the supernode's CDN fill of a content-addressed blob
// without downloading it, and waits until the fill has ended: a
// registration as the cdn pattern (never a holder, never scheduled),
// dropped again at once. Engines such as skopeo fetch an image's layers
// one after another; each layer's fill starting only when the first host
// asks for it makes a pull the sum of the per-layer fills and the lags
// between them. Warming the blobs of a manifest one after another, in its
// order, keeps the registry's link busy with the layer wanted next rather
// than sharing it among all of them. The client's headers go along as a
// stream's do, and the blob is warmed only if the source answers their
// HEAD with 200, so a client that may not read a blob cannot make the CDN
// fetch it. Errors are only logged: a cold layer still streams.
func (s *Swarm) Warm(ctx context.Context, r *http.Request, src Source, id Identity) {
	if id.Digest == "" || !ValidDigest(id.Digest) || !s.claimWarm(id.Digest) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, warmTimeout)
	c, node, taskID, err := s.warm(rctx, r, src, id)
	cancel()
	if err != nil {
		s.unclaimWarm(id.Digest)
		s.log.Infof("warm %s: %v", id.Digest, err)
		return
	}
	s.m.Warmed.Inc()
	wctx, wcancel := context.WithTimeout(ctx, fillWait)
	defer wcancel()
	if err := waitFill(wctx, c, node, taskID); err != nil {
		s.log.Infof("warm %s: %v", id.Digest, err)
	}
}

// waitFill polls the task's CDN status until it is no longer running.
func waitFill(ctx context.Context, c *api.Client, node, taskID string) error {
	t := time.NewTicker(fillPoll)
	defer t.Stop()
	for {
		ti, err := c.TaskInfo(ctx, node, taskID)
		if err != nil {
			return fmt.Errorf("fill of %s: %w", taskID, err)
		}
		if ti.CdnStatus != types.CDNStatusWaiting && ti.CdnStatus != types.CDNStatusRunning {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fill of %s: %w", taskID, ctx.Err())
		case <-t.C:
		}
	}
}

// warm registers and drops the cdn-pattern client that starts the fill;
// it returns the client, node and task ID to follow the fill with.
func (s *Swarm) warm(ctx context.Context, r *http.Request, src Source, id Identity) (*api.Client, string, string, error) {
	head, err := s.head(ctx, r, src)
	if err != nil {
		return nil, "", "", err
	}
	if head.StatusCode != http.StatusOK || head.ContentLength == 0 {
		return nil, "", "", fmt.Errorf("source answers HEAD with %d, length %d", head.StatusCode, head.ContentLength)
	}
	cfg, err := s.config(r, src, id)
	if err != nil {
		return nil, "", "", err
	}
	cfg.Stream, cfg.Pattern = false, dfgetcfg.PatternCDN
	c := api.New()
	if err := c.SecureNodes(cfg.NodeToken, cfg.NodeCACerts); err != nil {
		return nil, "", "", err
	}
	cas, err := core.ReadCAs(cfg.CACerts)
	if err != nil {
		return nil, "", "", err
	}
	nodes, _ := regist.Order(ctx, cfg, cas, net.DefaultResolver)
	ip := cfg.IP
	if ip == "" {
		if ip, err = regist.LocalIP(ctx, nodes); err != nil {
			return nil, "", "", err
		}
	}
	cid := ip + "-warm-" + cfg.Sign
	reg, err := regist.Register(ctx, c, cfg, nodes, regist.Request{CID: cid, IP: ip, RootCAs: cas})
	if err != nil {
		return nil, "", "", err
	}
	// The registration started the fill; the client itself has nothing
	// to download. Its own peer record goes down, no other.
	return c, reg.Node, reg.Data.TaskID, c.ReportServiceDown(ctx, reg.Node, reg.Data.TaskID, cid)
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
