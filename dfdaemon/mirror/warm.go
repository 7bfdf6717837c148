package mirror

import (
	"bytes"
	"context"
	"mime"
	"net/http"
	"regexp"
	"slices"

	"github.com/damselfly-p2p/damselfly/dfdaemon/swarm"
	"github.com/damselfly-p2p/damselfly/pkg/manifest"
)

// manifestPath is a manifest GET: /v2/<name>/manifests/<reference>.
var manifestPath = regexp.MustCompile(`^/v2/(.+)/manifests/[^/]+$`)

// maxManifest bounds the bytes of a manifest kept for warming; a larger
// answer is forwarded without warming.
const maxManifest = 4 << 20

// imageManifests are the media types whose layers are warmed: an image
// manifest, not a list (whose entries are manifests the engine fetches
// next, warmed then).
var imageManifests = map[string]bool{
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.v1+prettyjws": true,
	"application/vnd.docker.distribution.manifest.v1+json":      true,
}

// manifestCapture passes a forwarded answer through and keeps a copy of
// its body when it is a 200 image manifest of bounded size.
type manifestCapture struct {
	http.ResponseWriter
	keep bool
	over bool
	buf  bytes.Buffer
}

func (c *manifestCapture) WriteHeader(code int) {
	mt, _, _ := mime.ParseMediaType(c.Header().Get("Content-Type"))
	c.keep = code == http.StatusOK && imageManifests[mt]
	c.ResponseWriter.WriteHeader(code)
}

func (c *manifestCapture) Write(p []byte) (int, error) {
	if c.keep && !c.over {
		if c.buf.Len()+len(p) > maxManifest {
			c.over = true
			c.buf = bytes.Buffer{}
		} else {
			c.buf.Write(p)
		}
	}
	return c.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (the forwarder flushes).
func (c *manifestCapture) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// body is the captured manifest, nil if none.
func (c *manifestCapture) body() []byte {
	if !c.keep || c.over {
		return nil
	}
	return c.buf.Bytes()
}

// manifestBlobs are the blob digests an image manifest names: the layers
// (schema 2 and OCI), or the fsLayers (schema 1), then the config, each
// once; none for what is not a manifest.
func manifestBlobs(b []byte) []string {
	m, err := manifest.Parse(b)
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range append(m.LayerDigests(), m.ConfigDigest()) {
		if swarm.ValidDigest(d) && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// warmManifest starts the CDN fill of the manifest's blobs one after
// another, in its order, in the background: the engine has the manifest
// and asks for the blobs meanwhile (a blob it asks for before its turn
// starts its own fill). Every wait is bounded by the swarm's timeouts.
func (m *Mirror) warmManifest(r *http.Request, name string, body []byte) {
	blobs := manifestBlobs(body)
	if len(blobs) == 0 {
		return
	}
	ctx := context.WithoutCancel(r.Context())
	hdr := r.Clone(ctx)
	hdr.Body = http.NoBody
	srcs := make([]swarm.Source, len(blobs))
	for i, d := range blobs {
		u := *r.URL
		u.Path, u.RawPath = "/v2/"+name+"/blobs/"+d, ""
		srcs[i] = swarm.Source{URL: m.upstream(&u), CACerts: m.CACerts, Insecure: m.Insecure}
	}
	go func() {
		for i, d := range blobs {
			m.Swarm.Warm(ctx, hdr, srcs[i], swarm.Identity{Digest: d})
		}
	}()
}

// manifestName is the repository name of a manifest GET, "" for any
// other request.
func manifestName(r *http.Request) string {
	if r.Method != http.MethodGet {
		return ""
	}
	if sm := manifestPath.FindStringSubmatch(r.URL.Path); sm != nil {
		return sm[1]
	}
	return ""
}
