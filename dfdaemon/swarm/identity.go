package swarm

import (
	"net/http"
	"net/url"
	"regexp"
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
// by its digest, anything else by its URL, trusting the system roots.
type URLSwarm struct{ S *Swarm }

// ServeGET serves r, a GET of target, through the swarm.
func (u URLSwarm) ServeGET(w http.ResponseWriter, r *http.Request, target *url.URL) {
	u.S.ServeGET(w, r, Source{URL: target}, Identity{Digest: BlobDigest(target.Path)})
}
