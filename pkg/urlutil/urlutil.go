// Package urlutil holds the URL and header rules shared by dfget and the
// supernode: which source URLs are accepted, how --filter turns a raw URL into
// a task URL, and how "Key: Value" header strings become a header map.
package urlutil

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/netguard"
)

// Validate accepts only absolute http and https URLs with a host.
func Validate(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("invalid URL: empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("invalid URL %q: no host", raw)
	}
	return u, nil
}

// FilterQuery removes the query parameters whose keys are in filter (an
// "&"-separated list, as given to --filter) from raw, keeping the order of
// the rest. The "?" goes when nothing remains. The query is split on "&" as
// text, not re-encoded, so the task URL is stable for a given input.
func FilterQuery(raw, filter string) string {
	if filter == "" {
		return raw
	}
	drop := map[string]bool{}
	for _, k := range strings.Split(filter, "&") {
		if k = strings.TrimSpace(k); k != "" {
			drop[k] = true
		}
	}
	base, query, ok := strings.Cut(raw, "?")
	if !ok || len(drop) == 0 {
		return raw
	}
	frag := ""
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query, frag = query[:i], query[i:]
	}
	var kept []string
	for _, kv := range strings.Split(query, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			kept = append(kept, kv)
		}
	}
	if len(kept) == 0 {
		return base + frag
	}
	return base + "?" + strings.Join(kept, "&") + frag
}

// ParseHeaders turns "Key: Value" strings into a header map: split on the
// first colon, both sides trimmed, repeated keys joined with ",", empty
// values dropped. A string without a colon or with an empty key is an error.
func ParseHeaders(lines []string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid header %q: want \"Key: Value\"", l)
		}
		if v == "" {
			continue
		}
		k = http.CanonicalHeaderKey(k)
		if old, ok := out[k]; ok {
			v = old + "," + v
		}
		out[k] = v
	}
	return out, nil
}

// HeaderLines is the inverse of ParseHeaders, sorted by key so the result is
// stable.
func HeaderLines(h map[string]string) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+": "+h[k])
	}
	return out
}

// HostAllowed reports whether u's host is in allow: host names
// (case-insensitive), IP addresses or CIDR prefixes, as netguard reads them.
// An empty list allows every host.
func HostAllowed(allow []string, u *url.URL) bool {
	if len(allow) == 0 {
		// The common case (every redirect of a source fetch asks): no
		// Guard to build, which would read the proxy environment too.
		return true
	}
	return netguard.New(allow).HostAllowed(u.Hostname())
}
