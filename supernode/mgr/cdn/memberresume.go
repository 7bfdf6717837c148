package cdn

// The switch from a member to the origin. Pieces the home gave were
// already offered to peers, so the fill cannot start over: the rest must be
// the same version's bytes, from the first byte not verified, or the fill
// fails. Only a strong validator can prove that: a resume asks If-Range
// with the strong ETag or the strong Last-Modified the home sent (a date is
// strong when the origin's Date was a second later, which only the home
// saw: validators.go), and without one (the origin sent neither, or only
// weak ones) nothing after byte 0 is taken from the origin, as the CDN's
// own resume of a partial cache (plan) never resumes without one. A task with
// the client's own Range is that range of the origin: the rest is the
// range moved forward, as dfget moves it when it resumes a ranged download;
// an origin that ignores Range answers the whole file, of which the rest is
// cut out as a fresh fill cuts the range (plan.ranged).

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// toOrigin drops the member and reads the rest of the file from the
// origin: by Range from the first byte not verified when the origin honours
// it, else by skipping what the member gave of a 200 of the same version.
// Its errors are the body's read errors, which the cutter reports as
// source errors.
func (b *memberBody) toOrigin(reason string, cause error) error {
	b.closeMember()
	// The origin gets the whole stall bound from now.
	b.keepAlive()
	if b.off > 0 && b.validator == "" {
		b.m.metrics.ClusterFallbacks.WithLabelValues(reason).Inc()
		return fmt.Errorf("cluster fetch %s after %d bytes (%v), and the source sent no strong validator "+
			"(a strong ETag, or a Last-Modified at least 1 s before its Date): "+
			"the rest cannot be proven the same version, so the fill fails", reason, b.off, cause)
	}
	b.m.fallback(b.src, reason, cause)
	ask, err := newOriginAsk(b.src, b.off, b.length)
	if err != nil {
		return err
	}
	extra := map[string]string{}
	if ask.header != "" {
		extra["Range"] = ask.header
	}
	if b.off > 0 {
		extra["If-Range"] = b.validator
	}
	resp, err := b.m.get(b.ctx, b.src, extra)
	if err != nil {
		return err
	}
	skip, limit, err := b.checkAnswer(ask, resp)
	if err != nil {
		resp.Body.Close()
		return fmt.Errorf("resume at %d after the member: %w", b.off, err)
	}
	// The bytes before the rest are read as the rest is, so they count
	// and keep the watchdog quiet; the member's own reader is not under
	// the countingReader.
	win := newWindow(resp.Body, skip, limit)
	win.needsByte = ask.user && b.off == 0
	win.skipped = func(n int) {
		b.m.metrics.DownloadBytes.Add(float64(n))
		b.keepAlive()
	}
	b.origin = win
	return nil
}

// checkAnswer checks that the origin's answer is the file from byte
// b.off on, of the version the home read (a 206 of another version, from
// an origin that ignores If-Range, is refused), and returns how many of its
// bytes come before that byte and how many follow it that are the file's
// (-1: up to the body's end).
func (b *memberBody) checkAnswer(ask originAsk, resp *http.Response) (int64, int64, error) {
	switch resp.StatusCode {
	case http.StatusPartialContent:
		skip, err := ask.checkPart(resp)
		if err == nil && b.off > 0 {
			err = sameValidators(resp.Header, b.home.Get("ETag"), lastModifiedMillis(b.home))
		}
		if err != nil {
			return 0, 0, err
		}
		return skip, -1, nil
	case http.StatusOK:
		return ask.checkWhole(resp, b.sameVersion(resp.Header))
	}
	return 0, 0, fmt.Errorf("answered %d", resp.StatusCode)
}

// sameVersion reports whether an answer's validator is the home's: a 200
// to an If-Range is then the origin ignoring Range, not a changed file. A
// weak ETag says nothing about the bytes.
func (b *memberBody) sameVersion(h http.Header) bool {
	if b.etag {
		return h.Get("ETag") == b.validator && !strings.HasPrefix(b.validator, "W/")
	}
	return b.validator != "" && h.Get("Last-Modified") == b.validator
}

// originAsk is the origin request that continues a member's file at byte
// off of its content, and what the answer must be.
type originAsk struct {
	user   bool              // the task has the client's own Range
	br     urlutil.ByteRange // the task's range; bytes=0- without one
	spec   string            // the Range the answer answers ("" for none)
	header string            // the Range to send, over the task's own
	off    int64
	length int64 // the file's content length, -1 when unknown
}

func newOriginAsk(src Source, off, length int64) (originAsk, error) {
	br, user, err := taskRange(src)
	if err != nil {
		return originAsk{}, fmt.Errorf("resume at %d after the member: %w", off, err)
	}
	a := originAsk{user: user, br: br, spec: rangeHeader(src), off: off, length: length}
	switch {
	case off == 0:
		// Nothing given yet: the task's own request, as a fresh fill.
	case br.Suffix > 0:
		// Its start hangs on the length: asked unmoved, the answer is
		// skipped up to off.
		a.header = a.spec
	default:
		moved := urlutil.ByteRange{First: br.First + off, Last: br.Last}
		a.header = "bytes=" + strconv.FormatInt(moved.First, 10) + "-"
		if moved.Last >= 0 {
			a.header += strconv.FormatInt(moved.Last, 10)
		}
	}
	if a.header != "" {
		a.spec = a.header
	}
	return a, nil
}

// checkWhole takes a 200: before any byte was given it is the fill from
// the start, as a fresh fill takes it; after, only if the origin ignored
// Range on the same version (it is then skipped to off). For a task with
// its own Range the 200 is the whole file, of which the file is the range
// (as a fresh fill cuts it, plan.ranged): it is skipped to the range's
// byte off and read to the range's end.
func (a originAsk) checkWhole(resp *http.Response, sameVersion bool) (int64, int64, error) {
	if a.off > 0 && !sameVersion {
		return 0, 0, fmt.Errorf("source changed since the member read it (If-Range answered with the whole file)")
	}
	if a.user {
		return a.rangeOfWhole(resp.ContentLength)
	}
	if a.length >= 0 && resp.ContentLength >= 0 && resp.ContentLength != a.length {
		return 0, 0, fmt.Errorf("answered 200 with %d bytes for a file of %d", resp.ContentLength, a.length)
	}
	return a.off, -1, nil
}

// rangeOfWhole places the rest of a task's range in a 200's body of size
// bytes (-1 when unknown): the bytes before it and its length.
func (a originAsk) rangeOfWhole(size int64) (int64, int64, error) {
	first, length, err := a.br.InWhole(size)
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("%w (Range %q)", err, a.spec)
	case a.length >= 0 && size >= 0 && length != a.length:
		return 0, 0, fmt.Errorf("answered 200 whose range %q is %d bytes, the member's file %d", a.spec, length, a.length)
	case a.length >= 0:
		length = a.length
	}
	if length >= 0 {
		length -= a.off
	}
	return first + a.off, length, nil
}

// checkPart takes a 206 that starts at the byte asked for and ends where
// the member's file does.
func (a originAsk) checkPart(resp *http.Response) (int64, error) {
	if a.spec == "" {
		return 0, fmt.Errorf("answered 206 to a request without Range")
	}
	got := resp.Header.Get("Content-Range")
	cr, err := urlutil.ParseContentRange(got)
	if err != nil {
		return 0, fmt.Errorf("answered 206 to Range %q: %w", a.spec, err)
	}
	// base is the resource's byte that is the file's first.
	base, skip := a.br.First, int64(0)
	if a.br.Suffix > 0 {
		if cr.Total < 0 {
			return 0, fmt.Errorf("answered Content-Range %q to Range %q: no total to place a suffix by", got, a.spec)
		}
		base, skip = max(cr.Total-a.br.Suffix, 0), a.off
	}
	if cr.First != base+a.off-skip || !a.endAgrees(cr, base) {
		return 0, fmt.Errorf("answered Content-Range %q to Range %q: not bytes %d on of the member's file of %d bytes from %d",
			got, a.spec, a.off, a.length, base)
	}
	return skip, nil
}

// endAgrees reports that a 206 ends where the file does: at its last byte
// (the resource's last, for a range open to the end or cut short by it).
// Of a file of unknown length, it must end where the range does.
func (a originAsk) endAgrees(cr urlutil.ContentRange, base int64) bool {
	open := a.br.Suffix > 0 || a.br.Last < 0
	atEnd := cr.Last == cr.Total-1
	switch {
	case a.length < 0 && open:
		return cr.Total < 0 || atEnd
	case a.length < 0:
		return cr.Last == a.br.Last || (atEnd && cr.Last < a.br.Last)
	}
	last := base + a.length - 1
	if cr.Last != last {
		return false
	}
	return (!open && last == a.br.Last) || cr.Total == last+1
}
