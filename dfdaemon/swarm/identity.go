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

// anyBlobPath is any path under a registry's blobs: a blob by any digest
// or spelling, an upload.
var anyBlobPath = regexp.MustCompile(`^(?:/.*)?/v2/.+/blobs/`)

// URLSwarm serves a proxy's GETs (dfdaemon/proxy's Swarm): a registry blob
// by its digest, anything else by its URL, its source trusted as the
// proxy says (a hijacked host's certs and insecure).
type URLSwarm struct{ S *Swarm }

// ServeGET serves r, a GET of target, through the swarm. A registry blob
// whose digest the swarm cannot check (sha512, upper-case hex) is
// forwarded to the source, as the mirror forwards it: as a URL task its
// bytes would be served whole and unchecked against the digest the
// client asked for.
func (u URLSwarm) ServeGET(w http.ResponseWriter, r *http.Request, target *url.URL, trust tlsconf.Trust) {
	src := Source{URL: target, CACerts: trust.CAFiles, Insecure: trust.Insecure}
	d := BlobDigest(target.Path)
	if d == "" && anyBlobPath.MatchString(target.Path) {
		u.S.Forward(w, r, src)
		return
	}
	u.S.ServeGET(w, r, src, Identity{Digest: d})
}
