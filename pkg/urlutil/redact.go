package urlutil

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Masked replaces URL credentials wherever URLs are shown or stored outside
// memory.
const Masked = "xxxxx"

// userinfo finds the credentials of URLs in text: scheme "://", then the
// authority up to its last "@" (as url.Parse splits it), never across a
// path, query, fragment, space or quote.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#\s"'<>]*)@`)

// Redact masks the credentials of every URL in s: "user:pass@" becomes
// "user:xxxxx@", and a lone "token@" (a user name may be a secret too)
// becomes "xxxxx@". It works on text, so it also masks URLs that do not
// parse and URLs inside error messages.
func Redact(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfo.FindStringSubmatch(m)
		user, _, hasPass := strings.Cut(sub[2], ":")
		if !hasPass {
			return sub[1] + Masked + "@"
		}
		return sub[1] + user + ":" + Masked + "@"
	})
}

// Clip bounds untrusted text before it is echoed in a reply or a log line:
// past n bytes it is cut (on a character boundary) and marked with how
// much was left out.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "...(" + strconv.Itoa(len(s)-cut) + " more bytes)"
}
