package swarm

import (
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"

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
type URLSwarm struct {
	S *Swarm
	// DigestHosts are the origins whose registry blobs are shared by
	// digest alone, with the mirror and with each other: "host" (on its
	// scheme's default port) or "host:port". Through the proxy the client
	// chooses the origin, and a task by digest alone would give the
	// swarm's copy of a private blob to a client whose own server answers
	// the HEAD for that digest. A blob from any other origin is checked
	// against its digest too, but its task is its URL and digest: shared
	// only by clients of that URL.
	DigestHosts []string
}

// ServeGET serves r, a GET of target, through the swarm. A registry blob
// whose digest the swarm cannot check (sha512, upper-case hex) is
// forwarded to the source, as the mirror forwards it: as a URL task its
// bytes would be served whole and unchecked against the digest the
// client asked for.
func (u URLSwarm) ServeGET(w http.ResponseWriter, r *http.Request, target *url.URL, trust tlsconf.Trust) {
	src := Source{URL: target, CACerts: trust.CAFiles, Insecure: trust.Insecure}
	if BlobDigest(target.Path) == "" && anyBlobPath.MatchString(target.Path) {
		u.S.Forward(w, r, src)
		return
	}
	u.S.ServeGET(w, r, src, u.identity(target))
}

// identity names the task of a GET of target: by digest alone only for a
// blob of one of DigestHosts.
func (u URLSwarm) identity(target *url.URL) Identity {
	d := BlobDigest(target.Path)
	return Identity{Digest: d, ByURL: d != "" && !hostIn(target, u.DigestHosts)}
}

// hostIn reports whether target's origin is one of hosts: "host" stands
// for the host on target's scheme's default port.
func hostIn(target *url.URL, hosts []string) bool {
	def := map[string]string{"http": "80", "https": "443"}[target.Scheme]
	port := target.Port()
	if port == "" {
		port = def
	}
	for _, h := range hosts {
		name, p, err := net.SplitHostPort(h)
		if err != nil {
			name, p = strings.Trim(h, "[]"), def
		}
		if strings.EqualFold(name, target.Hostname()) && p == port {
			return true
		}
	}
	return false
}
