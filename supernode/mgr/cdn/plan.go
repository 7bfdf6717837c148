package cdn

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
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
}

// Start begins the CDN of a task: it returns once the source has answered
// (or the cache was validated) and continues the body in the background;
// done is called exactly once, from another goroutine, with the result.
func (m *Manager) Start(src Source, done func(Result)) (Started, error) {
	if m.ctx.Err() != nil {
		return Started{}, errors.New("cdn manager is closed")
	}
	m.progress.ResetCDN(src.TaskID)
	p := m.plan(src)
	ctx, cancel := context.WithCancel(m.ctx)
	resp, err := m.open(ctx, src, p.headers)
	if err != nil {
		cancel()
		return Started{}, err
	}
	if resp.StatusCode == http.StatusNotModified {
		resp.Body.Close()
		cancel()
		if !p.conditional() {
			return Started{}, &SourceError{URL: src.RawURL, Status: resp.StatusCode}
		}
		if st, ok := m.reuse(src, p.meta, done); ok {
			return st, nil
		}
		// The cache is unusable after all: fetch it whole.
		ctx, cancel = context.WithCancel(m.ctx)
		resp, err = m.get(ctx, src, nil)
		if err != nil {
			cancel()
			return Started{}, err
		}
	}
	m.metrics.Download.Inc()
	return m.begin(ctx, cancel, src, p, resp, done)
}

// plan reads the task's cache meta and decides the request: a complete
// file of the same task is validated with If-None-Match/If-Modified-Since
// (a file without validators is refetched, as v1 does); a partial one with
// validators and a known length resumes after the pieces its journal
// vouches for (resumable), unless the client asked for a range itself.
func (m *Manager) plan(src Source) *plan {
	id := src.TaskID
	p := &plan{headers: map[string]string{}}
	meta, err := m.store.ReadMeta(id)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.WithError(err).Warnf("ignore unreadable cache meta of %s", id)
	}
	if err != nil || !sameTask(meta, src) {
		return p
	}
	p.meta = meta
	_, userRange := src.Headers["Range"]
	switch {
	case meta.Finish && meta.Success && !src.Digest.IsZero() && meta.Sha256 != src.Digest.String():
		// A cache the expected sha256 was never checked on (or another one
		// was): fetched whole, so this fetch checks it.
	case meta.Finish && meta.Success:
		if meta.ETag != "" {
			p.headers["If-None-Match"] = meta.ETag
		}
		if meta.LastModified != 0 {
			p.headers["If-Modified-Since"] = httpTime(meta.LastModified)
		}
	case !meta.Finish && meta.HTTPFileLen > 0 && !userRange && (meta.ETag != "" || meta.LastModified != 0):
		pre := m.resumable(id, meta, newFileSums(src))
		if pre == nil {
			break
		}
		p.resume = pre
		p.headers["Range"] = "bytes=" + strconv.FormatInt(piece.ContentOffset(pre.count, meta.PieceSize), 10) + "-" +
			strconv.FormatInt(meta.HTTPFileLen-1, 10)
		if meta.ETag != "" {
			p.headers["If-Range"] = meta.ETag
		} else {
			p.headers["If-Range"] = httpTime(meta.LastModified)
		}
	}
	return p
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

// settle drops the resume unless the source answered the Range with the
// same total (else it sent the whole file: changed, or no range support),
// and returns the content length and the piece size of the fetch.
func (p *plan) settle(resp *http.Response) (int64, int32) {
	length := resp.ContentLength
	if p.resume != nil {
		total, ok := rangeTotal(resp, piece.ContentOffset(p.resume.count, p.meta.PieceSize))
		if !ok || total != p.meta.HTTPFileLen {
			p.resume = nil
		} else {
			length = p.meta.HTTPFileLen
		}
	}
	if p.resume != nil {
		return length, p.meta.PieceSize
	}
	return length, piece.ComputeSize(length)
}

// nextMeta is the meta of the fetch being started: a resumed file keeps
// the validators it was fetched under.
func (p *plan) nextMeta(src Source, resp *http.Response, length int64, pieceSize int32) *store.Meta {
	meta := &store.Meta{
		TaskID: src.TaskID, URL: src.TaskURL, PieceSize: pieceSize, HTTPFileLen: length, BizID: src.Identifier,
		AccessTime: time.Now().UnixMilli(), Md5: src.Md5, LastModified: lastModifiedMillis(resp.Header),
		ETag: resp.Header.Get("ETag"),
	}
	if p.resume != nil {
		meta.ETag, meta.LastModified = p.meta.ETag, p.meta.LastModified
	}
	return meta
}

// begin records the fetch's meta and reads the body in the background.
func (m *Manager) begin(ctx context.Context, cancel context.CancelFunc, src Source, p *plan, resp *http.Response, done func(Result)) (Started, error) {
	length, pieceSize := p.settle(resp)
	meta := p.nextMeta(src, resp, length, pieceSize)
	if err := m.store.WriteMeta(meta); err != nil {
		resp.Body.Close()
		cancel()
		return Started{}, err
	}
	cf := newCacheFile(pieceSize, 0, cancel)
	cf.lazy.path = m.store.DataPath(src.TaskID)
	m.setFile(src.TaskID, cf)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		done(m.run(ctx, cancel, src, resp, meta, p.resume, cf))
	}()
	return Started{HTTPFileLength: length, PieceSize: pieceSize}, nil
}
