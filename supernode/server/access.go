package server

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// AuthHeader carries the shared API token: "Authorization: Bearer <token>".
const AuthHeader = "Authorization"

// openPath are the routes served without the token, so health checks need
// no secret.
var openPath = regexp.MustCompile(`^(/v[0-9.]+)?/_ping$`)

// requireToken refuses API calls without the shared token (401 in the REST
// error body). An empty token leaves the API open, as v1.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get(AuthHeader))
		if !openPath.MatchString(r.URL.Path) && (!ok || subtle.ConstantTimeCompare([]byte(got), want) != 1) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="supernode"`)
			writeError(w, http.StatusUnauthorized, http.StatusUnauthorized, "missing or wrong auth token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken takes the token out of an Authorization value. The scheme is
// case-insensitive and may be followed by more than one space (RFC 9110
// section 11.1); clients send "bearer" as well as "Bearer".
func bearerToken(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, tok != ""
}

// sourceAllowed checks a source URL's host against the allow-list (host
// names, case-insensitive, IPs or CIDR prefixes, as urlutil.HostAllowed
// reads them); an empty list allows every host.
func sourceAllowed(allow []string, raw string) error {
	if len(allow) == 0 {
		return nil
	}
	u, err := urlutil.Validate(raw)
	if err != nil {
		return err
	}
	if !urlutil.HostAllowed(allow, u) {
		return fmt.Errorf("source host %q is not in the allow-list", u.Hostname())
	}
	return nil
}
