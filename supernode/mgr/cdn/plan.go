package cdn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// plan is what to ask the source for a task, given what its cache holds.
type plan struct {
	// meta is the cache's meta when it belongs to this task, else nil.
	meta *store.Meta
	// headers are added to the GET: a conditional request to validate a
	// complete cache file, or Range and If-Range to resume a partial one.
	headers map[string]string
	// resume is the valid prefix that a Range answer continues.
	resume *prefix
	// userRange is the task's own Range ("" for none): the task's content
	// is that range of the source, which a 206 must answer exactly.
	userRange string
	// given is what the registrations of a fill that waited for its turn
	// were answered (nil for a fill with a slot at once): its pieces have
	// that size, and the file that length when it was known (>= 0).
	given *Started
}

// errLengthChanged fails a fill that waited for its turn when the source's
// answer is of another length than the one its registrations were given:
// their clients count pieces, and check the file, by that length.
var errLengthChanged = errors.New("the file changed while its fill waited for its turn")

// errResumeDropped is settle's error for a 206 that does not continue the
// cached part: the file must be asked for again, whole.
var errResumeDropped = errors.New("resume dropped")

// Start begins the CDN of a task. With a fill slot free (fills.go) it
// returns once the source has answered (or the cache was validated) and
// continues the body in the background; with none it returns once the
// source was asked for the length alone (queuedLength), and the fill waits
// for its turn in the background; so does a member's fill whose home
// answered that its own fill waits (homewait.go), once the home told the
// length. done is called exactly once, from
// another goroutine, with the result.
func (m *Manager) Start(src Source, done func(Result)) (Started, error) {
	if m.ctx.Err() != nil {
		return Started{}, errors.New("cdn manager is closed")
	}
	m.stopFile(src.TaskID)
	m.progress.ResetCDN(src.TaskID)
	t := m.fills.Join()
	if !t.Granted() {
		length, err := m.queuedLength(src)
		if err != nil {
			m.fills.Leave(t)
			return Started{}, err
		}
		return m.enqueue(src, t, length, done), nil
	}
	st, running, err := m.startNow(src, done)
	if !running {
		m.fills.Release()
	}
	if errors.Is(err, errHomeWaits) {
		return m.startAfterHomeWaits(src, done)
	}
	return st, err
}

// startNow is Start with a slot: running reports that the fill went on in
// the background, which then frees the slot.
func (m *Manager) startNow(src Source, done func(Result)) (Started, bool, error) {
	p := m.plan(src, nil)
	ctx, cancel := context.WithCancel(m.ctx)
	resp, hit, err := m.ask(ctx, src, p)
	if err != nil {
		cancel()
		return Started{}, false, err
	}
	if hit {
		if r, ok := m.reuse(src, p.meta, nil); ok {
			cancel()
			go done(r)
			return Started{HTTPFileLength: p.meta.HTTPFileLen, PieceSize: p.meta.PieceSize, CacheHit: true}, false, nil
		}
		// The cache is unusable after all: fetch it whole.
		if resp, err = m.get(ctx, src, nil); err != nil {
			cancel()
			return Started{}, false, err
		}
	}
	m.metrics.Download.Inc()
	st, err := m.begin(ctx, cancel, src, p, resp, done)
	return st, err == nil, err
}

// ask sends the planned request. A 304 to a conditional request is a
// cache hit: no answer, and hit set.
func (m *Manager) ask(ctx context.Context, src Source, p *plan) (*http.Response, bool, error) {
	resp, err := m.open(ctx, src, p.headers)
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode != http.StatusNotModified {
		return resp, false, nil
	}
	resp.Body.Close()
	if !p.conditional() {
		return nil, false, &SourceError{URL: src.RawURL, Status: resp.StatusCode}
	}
	return nil, true, nil
}

// plan reads the task's cache meta and decides the request: a complete
// file of the same task is validated with If-None-Match/If-Modified-Since,
// each sent only with a strong validator (a file without one is refetched,
// as v1 does one without any: a 304 to a weak one could be of a newer
// version); a partial one with a strong validator and a known length
// resumes after the pieces its journal vouches for (resumable), unless the
// client asked for a range itself.
// given, when not nil, is what the registrations of a fill that waited for
// its turn were answered: its piece size, and its length when known, are
// the fill's, and a cache of another is not used.
func (m *Manager) plan(src Source, given *Started) *plan {
	id := src.TaskID
	p := &plan{headers: map[string]string{}, userRange: rangeHeader(src), given: given}
	meta, err := m.store.ReadMeta(id)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.WithError(err).Warnf("ignore unreadable cache meta of %s", id)
	}
	if err != nil || !sameTask(meta, src) ||
		(given != nil && (meta.PieceSize != given.PieceSize || (given.HTTPFileLength >= 0 && meta.HTTPFileLen != given.HTTPFileLength))) {
		return p
	}
	p.meta = meta
	userRange := p.userRange != ""
	switch {
	case meta.Finish && meta.Success && !src.Digest.IsZero() && meta.Sha256 != src.Digest.String():
		// A cache the expected sha256 was never checked on (or another one
		// was): fetched whole, so this fetch checks it.
	case meta.Finish && meta.Success:
		if strongETag(meta.ETag) {
			p.headers["If-None-Match"] = meta.ETag
		}
		if date := strongDate(meta); date != "" {
			p.headers["If-Modified-Since"] = date
		}
	case !meta.Finish && meta.HTTPFileLen > 0 && !userRange && ifRange(meta) != "":
		pre := m.resumable(id, meta, newFileSums(src))
		if pre == nil {
			break
		}
		p.resume = pre
		p.headers["Range"] = "bytes=" + strconv.FormatInt(piece.ContentOffset(pre.count, meta.PieceSize), 10) + "-" +
			strconv.FormatInt(meta.HTTPFileLen-1, 10)
		p.headers["If-Range"] = ifRange(meta)
	}
	return p
}

// ifRange is the validator a resume sends in If-Range ("" for none, and
// then no resume): the ETag if it is strong, else Last-Modified if it is.
// RFC 9110 (13.1.5) forbids a weak ETag there (a source answers it with
// the whole file), and a weak date lets a source honour it with the range
// of a version written in the same second, after the old one's pieces.
func ifRange(meta *store.Meta) string {
	if strongETag(meta.ETag) {
		return meta.ETag
	}
	return strongDate(meta)
}

// sameTask reports whether a cache meta is of this task: same ID and URL,
// and the same expected md5 (compared case-insensitively) or, without
// one, the same identifier.
func sameTask(meta *store.Meta, src Source) bool {
	return meta.TaskID == src.TaskID && meta.SameURL(src.TaskURL) && strings.EqualFold(meta.Md5, src.Md5) &&
		(src.Md5 != "" || meta.BizID == src.Identifier)
}

func httpTime(millis int64) string { return time.UnixMilli(millis).UTC().Format(http.TimeFormat) }

// conditional reports whether the request validated a cached file: only
// then is a 304 an answer.
func (p *plan) conditional() bool {
	_, etag := p.headers["If-None-Match"]
	return etag || p.headers["If-Modified-Since"] != ""
}

// settle checks the source's answer against the request and returns the
// content length and the piece size of the fetch. A 200 is the whole file:
// it ends a resume (the file changed, or the source ignores Range). A
// resume goes on only with a 206 of exactly the range it asked for, of the
// cached total and carrying no validator other than the cache's; any other
// 206 (from a source or proxy that ignores If-Range, or answers another
// range) returns an error wrapping errResumeDropped, and the file must be
// asked for again. Without a resume, a 206 must answer the task's own
// Range, whose bytes are the task's content (as many as its Content-Range
// states, when it has no Content-Length); a 200 to that Range (a source
// that ignores it) is the whole file, whose body settle narrows to the
// range (ranged). A fill that waited for its turn keeps the piece size its
// registrations were given, and an answer of another length than the one
// they were given fails (errLengthChanged).
func (p *plan) settle(resp *http.Response) (int64, int32, error) {
	partial := resp.StatusCode == http.StatusPartialContent
	if p.resume != nil && partial {
		if err := p.continues(resp); err != nil {
			p.resume = nil
			return 0, 0, fmt.Errorf("%w: %w", errResumeDropped, err)
		}
		return p.meta.HTTPFileLen, p.meta.PieceSize, nil
	}
	p.resume = nil
	length := resp.ContentLength
	switch {
	case partial && p.userRange == "":
		return 0, 0, errors.New("the request had no Range")
	case partial:
		cr, err := partOf(resp, p.userRange)
		if err != nil {
			return 0, 0, err
		}
		// partOf checked a Content-Length against the span; without one
		// the span is the length, which the cutter holds the body to.
		length = cr.Last - cr.First + 1
	case p.userRange != "":
		var err error
		if length, err = p.ranged(resp); err != nil {
			return 0, 0, err
		}
	}
	if p.given == nil {
		return length, piece.ComputeSize(length), nil
	}
	if want := p.given.HTTPFileLength; want >= 0 && length != want {
		if length >= 0 {
			return 0, 0, fmt.Errorf("%w: a file of %d bytes, its registrations were answered %d", errLengthChanged, length, want)
		}
		// No length told (chunked): the cutter holds the body to the one
		// given, and fails a body of another.
		length = want
	}
	return length, p.given.PieceSize, nil
}

// ranged narrows a 200 to a task with its own Range to the range and
// returns the range's length (-1: up to the body's end, of unknown
// length). A member's body is already the task's content.
func (p *plan) ranged(resp *http.Response) (int64, error) {
	if _, ok := resp.Body.(*memberBody); ok {
		return resp.ContentLength, nil
	}
	br, err := urlutil.ParseByteRange(p.userRange)
	if err != nil {
		return 0, fmt.Errorf("the request's %w", err)
	}
	first, length, err := br.InWhole(resp.ContentLength)
	if err != nil {
		return 0, fmt.Errorf("%w (Range %q)", err, p.userRange)
	}
	win := newWindow(resp.Body, first, length)
	win.needsByte = true
	resp.Body = win
	return length, nil
}

// continues checks that a 206 continues the cached part: the range the
// resume asked for, of the same total, and not another version of the file
// (an ETag or Last-Modified other than the cache's, sent by a source that
// ignores If-Range).
func (p *plan) continues(resp *http.Response) error {
	cr, err := partOf(resp, p.headers["Range"])
	if err != nil {
		return err
	}
	if cr.Total != p.meta.HTTPFileLen {
		return fmt.Errorf("Content-Range %q: a file of %d bytes, the cached part is of %d", resp.Header.Get("Content-Range"), cr.Total, p.meta.HTTPFileLen)
	}
	return sameValidators(resp.Header, p.meta.ETag, p.meta.LastModified)
}

// sameValidators checks that a 206 resuming a part carries no validator
// other than the part's (etag, and lastModified in Unix milliseconds): a
// source that ignores If-Range answers the Range from its new version,
// which would follow the old one's bytes. It only refuses: a validator
// that differs proves another version, weak or not, while an equal one
// proves the same version only when strong, which is why a resume is
// asked only with a strong one (ifRange).
func sameValidators(h http.Header, etag string, lastModified int64) error {
	if got := h.Get("ETag"); got != "" && got != etag {
		return fmt.Errorf("ETag %s, the part before is of ETag %s (the source ignores If-Range?)", got, cmp.Or(etag, "none"))
	}
	if lm := h.Get("Last-Modified"); lm != "" && lastModifiedMillis(h) != lastModified {
		return fmt.Errorf("Last-Modified %q, the part before is of %q (the source ignores If-Range?)", lm, httpTime(lastModified))
	}
	return nil
}

// nextMeta is the meta of the fetch being started, with the answer's
// validators: a resumed file's answer carries none but the cache's
// (continues), and one it lacks is the cache's. A resumed file's date is
// as strong as it was for the cached part: a later Date proves nothing of
// the version those bytes were.
func (p *plan) nextMeta(src Source, resp *http.Response, length int64, pieceSize int32) *store.Meta {
	meta := &store.Meta{
		TaskID: src.TaskID, URL: src.TaskURL, PieceSize: pieceSize, HTTPFileLen: length, BizID: src.Identifier,
		AccessTime: time.Now().UnixMilli(), Md5: src.Md5, LastModified: lastModifiedMillis(resp.Header),
		ETag: resp.Header.Get("ETag"), LastModifiedStrong: answerStrongLastModified(resp),
	}
	if p.resume != nil {
		meta.LastModifiedStrong = p.meta.LastModifiedStrong
		if meta.ETag == "" {
			meta.ETag = p.meta.ETag
		}
		if meta.LastModified == 0 {
			meta.LastModified = p.meta.LastModified
		}
	}
	return meta
}

// take settles the source's answer. A resume the answer does not continue
// is dropped and the file asked for once more, with a plain GET (its
// partial cache is then overwritten from the start). An answer that is not
// what was asked for is a source error.
func (m *Manager) take(ctx context.Context, src Source, p *plan, resp *http.Response) (*http.Response, int64, int32, error) {
	length, pieceSize, err := p.settle(resp)
	if errors.Is(err, errResumeDropped) {
		resp.Body.Close()
		m.log.WithField("task", src.TaskID).WithError(err).Warn("the source answered the resume with another part: fetching the file whole")
		// The cached part is of a version the source no longer vouches
		// for: should the GET below fail too, it is not resumed again.
		if rerr := m.store.RemoveJournal(src.TaskID); rerr != nil {
			m.log.WithField("task", src.TaskID).WithError(rerr).Warn("remove the journal of the dropped resume")
		}
		if resp, err = m.get(ctx, src, nil); err != nil {
			return nil, 0, 0, err
		}
		length, pieceSize, err = p.settle(resp)
	}
	if err != nil {
		resp.Body.Close()
		m.countSourceFailure()
		return nil, 0, 0, &SourceError{URL: src.RawURL, Status: resp.StatusCode, Err: err}
	}
	return resp, length, pieceSize, nil
}

// prepare settles the source's answer and records the fetch's meta.
func (m *Manager) prepare(ctx context.Context, src Source, p *plan, resp *http.Response) (*http.Response, *store.Meta, error) {
	resp, length, pieceSize, err := m.take(ctx, src, p, resp)
	if err != nil {
		return nil, nil, err
	}
	meta := p.nextMeta(src, resp, length, pieceSize)
	if err := m.store.WriteMeta(meta); err != nil {
		resp.Body.Close()
		return nil, nil, err
	}
	return resp, meta, nil
}

// begin records the fetch's meta and reads the body in the background,
// which then frees the fill's slot.
func (m *Manager) begin(ctx context.Context, cancel context.CancelFunc, src Source, p *plan, resp *http.Response, done func(Result)) (Started, error) {
	resp, meta, err := m.prepare(ctx, src, p, resp)
	if err != nil {
		cancel()
		return Started{}, err
	}
	// Read before the fill runs: it completes the meta.
	st := Started{HTTPFileLength: meta.HTTPFileLen, PieceSize: meta.PieceSize}
	cf := newCacheFile(meta.PieceSize, 0, cancel)
	cf.lazy.path = m.store.DataPath(src.TaskID)
	m.setFile(src.TaskID, cf)
	m.background(cf, cancel, done, func() Result {
		defer m.fills.Release()
		return m.run(ctx, cancel, src, resp, meta, p.resume, cf)
	})
	return st, nil
}

// background runs a task's fill, whose file is cf, and reports its result.
func (m *Manager) background(cf *cacheFile, cancel context.CancelFunc, done func(Result), fill func() Result) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		r := fill()
		// Before done: a stop waiting for the exit may hold what done
		// takes (the task's lock, in a registration's Start).
		close(cf.exited)
		done(r)
	}()
}
