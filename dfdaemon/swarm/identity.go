package swarm

import (
	"net/http"
	"net/url"
	"regexp"

	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
)

// blobPath is a registry blob by sha256 digest: /v2/<name>/blobs/<digest>,
// under an optional path prefix; the repository name may hold slashes.
var blobPath = regexp.MustCompile(`^(?:/.*)?/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

// BlobDigest is the digest a registry blob path names, "" for any other
// path. A blob reached by the mirror or through the proxy is then the
// same task.
func BlobDigest(path string) string {
	if m := blobPath.FindStringSubmatch(path); m != nil {
		return m[1]
	}
	return ""
}

// URLSwarm serves a proxy's GETs (dfdaemon/proxy's Swarm): a registry blob
// by its digest, anything else by its URL, its source trusted as the
// proxy says (a hijacked host's certs and insecure).
type URLSwarm struct{ S *Swarm }

// ServeGET serves r, a GET of target, through the swarm.
func (u URLSwarm) ServeGET(w http.ResponseWriter, r *http.Request, target *url.URL, trust tlsconf.Trust) {
	src := Source{URL: target, CACerts: trust.CAFiles, Insecure: trust.Insecure}
	u.S.ServeGET(w, r, src, Identity{Digest: BlobDigest(target.Path)})
}
