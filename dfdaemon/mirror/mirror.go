// Package mirror is the registry mirror: the Docker Registry HTTP API v2
// of one upstream registry, as container engines ask a mirror for it
// (dockerd registry-mirrors, containerd hosts.toml, registries.conf). A
// blob GET by sha256 digest goes through the swarm, content-addressed;
// every other request (manifests, tags, auth challenges, HEAD, pushes) is
// forwarded to the registry as it is.
package mirror

//go:generate go tool mockgen -source=mirror.go -destination=mock_swarm_test.go -package=mirror

import (
	"context"
	"net/http"
	"net/url"

	"github.com/damselfly-p2p/damselfly/dfdaemon/swarm"
)

// Swarm serves a GET through the swarm, or forwards a request as it is.
type Swarm interface {
	ServeGET(w http.ResponseWriter, r *http.Request, src swarm.Source, id swarm.Identity)
	Forward(w http.ResponseWriter, r *http.Request, src swarm.Source)
	// Warm starts the fill of a blob a manifest names (the request's
	// headers are the client's).
	Warm(ctx context.Context, r *http.Request, src swarm.Source, id swarm.Identity)
}

// Mirror mirrors the registry at Remote.
type Mirror struct {
	// Remote is the registry's base URL (scheme, host, optional path
	// prefix).
	Remote *url.URL
	// CACerts and Insecure say how to trust the registry.
	CACerts  []string
	Insecure bool
	// Direct forwards every request, blobs too (v1 registry_mirror.direct).
	Direct bool
	Swarm  Swarm
}

// ServeHTTP implements http.Handler.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src := swarm.Source{URL: m.upstream(r.URL), CACerts: m.CACerts, Insecure: m.Insecure}
	if d := swarm.BlobDigest(r.URL.Path); d != "" && r.Method == http.MethodGet && !m.Direct {
		m.Swarm.ServeGET(w, r, src, swarm.Identity{Digest: d})
		return
	}
	if name := manifestName(r); name != "" && !m.Direct {
		// The engine fetches the layers next, often one at a time:
		// starting every layer's fill now keeps the registry's link busy.
		c := &manifestCapture{ResponseWriter: w}
		m.Swarm.Forward(c, r, src)
		if b := c.body(); b != nil {
			m.warmManifest(r, name, b)
		}
		return
	}
	m.Swarm.Forward(w, r, src)
}

// upstream is the registry URL of a request made to the mirror: same
// path (under Remote's path) and query. A containerd "ns" query stays:
// the registry ignores it, a mirror behind may use it.
func (m *Mirror) upstream(u *url.URL) *url.URL {
	out := *m.Remote
	out.Path = m.Remote.Path + u.Path
	out.RawPath = ""
	if u.RawPath != "" {
		out.RawPath = m.Remote.EscapedPath() + u.RawPath
	}
	out.RawQuery = u.RawQuery
	return &out
}
