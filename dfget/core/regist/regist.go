// Package regist registers a dfget download with a supernode: it orders
// the configured nodes (Order: by rendezvous hashing of the task ID, so
// every peer of a file tries its home first, or in Dragonfly 1.x's weighted
// random order with --node-order random) and tries them in that order
// until one accepts (Register).
package regist

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// Result is a successful registration.
type Result struct {
	Node string // host:port of the supernode that accepted
	// SuperNodeIP is the address we dialled it on; CDN pieces are fetched
	// from it.
	SuperNodeIP string
	Data        types.RegisterResponseData
	// NoStreamCache is set for a stream registered with a supernode that
	// takes no stream-cache reports (Dragonfly 1.x): it was registered as
	// the cdn pattern, so the supernode never sends peers to it, and it
	// must not open a stream cache.
	NoStreamCache bool
}

// Request carries what the register body needs beyond the config.
type Request struct {
	CID     string
	IP      string
	Port    int // peer server port; 0 is the CDN pattern
	RootCAs [][]byte
}

// LocalIP picks the address other peers reach us on: the local side of a
// TCP connection to the first reachable node.
func LocalIP(ctx context.Context, nodes []nodes.Node) (string, error) {
	var last error
	for _, n := range nodes {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp4", n.Addr())
		if err != nil {
			last = err
			continue
		}
		ip := c.LocalAddr().(*net.TCPAddr).IP.String()
		c.Close()
		return ip, nil
	}
	if last == nil {
		last = errors.New("no node")
	}
	return "", fmt.Errorf("no supernode reachable to find the local IP: %w", last)
}

// nextNodeAfter is how long a registration waits to connect to a
// supernode before it tries the next one: a listed member that is down is
// skipped within a second. The last node gets the transport's default.
const nextNodeAfter = time.Second

// Register tries nodes in order and returns the first success, or an
// error naming every node's failure.
func Register(ctx context.Context, c *api.Client, cfg *config.Config, nodes []nodes.Node, r Request) (*Result, error) {
	host, _ := os.Hostname()
	body := types.RegisterRequest{
		RawURL: cfg.URL, TaskURL: cfg.TaskURL, CID: r.CID, IP: r.IP, HostName: host, Port: r.Port,
		Path: types.PeerFilePathPrefix + cfg.TaskFileName, Version: version.Version, Md5: cfg.Md5, Digest: cfg.Digest,
		CallSystem: cfg.CallSystem, Headers: cfg.Headers, Dfdaemon: cfg.Dfdaemon, Insecure: cfg.Insecure,
		RootCAs: r.RootCAs,
		// Always ask for BLAKE3 piece digests, whatever the pattern or
		// mode: a supernode that knows the field answers with them and
		// dfget verifies pieces several times cheaper than with md5; a
		// Dragonfly 1.x one ignores it and dfget verifies pieceMd5.
		PieceDigest: digest.BLAKE3.String(),
	}
	if cfg.Md5 == "" {
		body.Identifier = cfg.Identifier
	}
	if r.Port == 0 || cfg.Pattern == config.PatternCDN {
		body.Pattern = config.PatternCDN
	}
	if cfg.Stream {
		// No startPiece, even for a stream resumed elsewhere: the node
		// must offer the pieces written before, for their digests to be
		// checked (core's resumeStream).
		body.StreamMode, body.WindowSize = true, cfg.WindowSize
	}
	var errs []string
	for i, n := range nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		nctx := ctx
		if i < len(nodes)-1 {
			nctx = api.WithDialTimeout(ctx, nextNodeAfter)
		}
		body.SuperNodeIP = n.Host
		b, noCache := streamBody(nctx, c, n, body)
		d, err := c.Register(nctx, n.Addr(), &b)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return &Result{Node: n.Addr(), SuperNodeIP: n.Host, Data: *d, NoStreamCache: noCache}, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no supernode to register with")
	}
	return nil, fmt.Errorf("register failed: %s", strings.Join(errs, "; "))
}

// streamBody adapts a stream's registration to node: a supernode without
// stream support (probed once per registration) would make the stream a
// holder of every piece it reports (/peer/piece/suc, which it still needs)
// and send peers to pieces long gone from its window; registered as the
// cdn pattern it is never offered as a holder.
func streamBody(ctx context.Context, c *api.Client, n nodes.Node, body types.RegisterRequest) (types.RegisterRequest, bool) {
	if !body.StreamMode || body.Pattern == config.PatternCDN {
		return body, false
	}
	if ok, err := c.StreamSupported(ctx, n.Addr()); ok || err != nil {
		return body, false
	}
	body.Pattern = config.PatternCDN
	return body, true
}

// resolveTimeout bounds the DNS lookups of the node list, which happen
// before anything else of a download.
const resolveTimeout = 3 * time.Second

// Order returns the supernodes to try for cfg's task, its home first: each
// name in the list resolved to its addresses, again for every download so
// a change of DNS membership is followed, then ordered by rendezvous
// hashing of the task ID the supernodes will give the task (rootCAs are
// the contents of cfg's CA files, part of that ID). Names that do not
// resolve are kept (and reported in warnings), to fail at registration
// like any node that is down.
func Order(ctx context.Context, cfg *config.Config, rootCAs [][]byte, r nodes.Resolver) (order []nodes.Node, warnings []error) {
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	list, warnings := cfg.Nodes.Resolve(rctx, r)
	if cfg.NodeOrder == config.NodeOrderRandom {
		return list.Random(rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))), warnings
	}
	key, err := TaskID(cfg, rootCAs)
	if err != nil {
		// The config was validated, so this is not expected; any order
		// still works, the home only saves origin reads.
		warnings = append(warnings, err)
	}
	return list.Home(key), warnings
}

// TaskID is the ID a supernode gives cfg's task, registered with rootCAs.
func TaskID(cfg *config.Config, rootCAs [][]byte) (string, error) {
	id, err := taskid.Registration{RawURL: cfg.URL, TaskURL: cfg.TaskURL, Md5: cfg.Md5, Identifier: cfg.Identifier,
		Headers: cfg.Headers, Trust: taskid.Trust{Insecure: cfg.Insecure, RootCAs: rootCAs}}.ID()
	if err != nil {
		return "", fmt.Errorf("task of %s: %w", urlutil.Redact(cfg.URL), err)
	}
	return id, nil
}
