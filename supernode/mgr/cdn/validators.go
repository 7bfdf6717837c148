package cdn

// Which of a source's validators may vouch for cached bytes. Only a strong
// validator tells two versions apart: a strong ETag, or a Last-Modified
// date that the source's own Date (in the same answer) shows to be at
// least a second old (RFC 9110 8.8.2.2). A file written twice within one
// second keeps one date; a 304 to If-Modified-Since, or a 206 to If-Range,
// with that date could be of either version.

import (
	"net/http"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// strongETag reports whether etag is a strong entity tag.
func strongETag(etag string) bool {
	return etag != "" && !strings.HasPrefix(etag, "W/")
}

// strongLastModified reports whether an answer's Last-Modified is a strong
// validator: both it and Date are present and parse, and Date is at least
// a second later.
func strongLastModified(h http.Header) bool {
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		return false
	}
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return false
	}
	return strongAt(lm, date)
}

// strongAt is the rule on the two instants: a source could still write a
// second version with the same date until lastModified's second is over.
func strongAt(lastModified, date time.Time) bool {
	return date.Sub(lastModified) >= time.Second
}

// answerStrongLastModified is strongLastModified of the answer a fetch
// takes. A member's file comes with its home's word for it (the home saw
// the origin's Date, the asker does not): an older home, which gives none,
// leaves the date weak.
func answerStrongLastModified(resp *http.Response) bool {
	if mb, ok := resp.Body.(*memberBody); ok {
		return mb.lastModifiedStrong
	}
	return strongLastModified(resp.Header)
}

// strongDate is the cache's Last-Modified as an HTTP date when it is a
// strong validator, else "".
func strongDate(meta *store.Meta) string {
	if meta.LastModified == 0 || !meta.LastModifiedStrong {
		return ""
	}
	return httpTime(meta.LastModified)
}
