package cdn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// StartSource is the "source" CDN pattern: nothing is cached and every
// piece is a plain range of the source that peers fetch from the source
// directly, as in v1. Unlike v1, the supernode reads the source once,
// streaming and storing nothing, to learn each piece's digests and the
// whole-file md5: md5 is computed here for every task, beside BLAKE3,
// because nothing is stored to compute it from later when a Dragonfly 1.x
// client asks (the source could have changed by then). A piece is offered
// only once its digest is known, so no client ever takes a piece it cannot
// check, and a source that fails during that read fails the task as a CDN
// failure does. A task whose headers carry a Range is that range of the
// source (its span): its length, pieces and digests are of those bytes,
// and clients re-base a piece's range onto the Range's start when they
// fetch it from the source, as v1 clients do. It returns once the source
// has told its length (it must serve ranges: 206 to a one-byte range);
// done is called from another goroutine when the read ends.
func (m *Manager) StartSource(src Source, done func(Result)) (Started, error) {
	if m.ctx.Err() != nil {
		return Started{}, errors.New("cdn manager is closed")
	}
	m.stopFile(src.TaskID)
	sp, err := m.probe(src)
	if err != nil {
		return Started{}, err
	}
	ps := piece.ComputeSize(sp.length)
	total := int((sp.length + int64(ps) - 1) / int64(ps))
	m.progress.ResetCDN(src.TaskID)
	ctx, cancel := context.WithCancel(m.ctx)
	cf := newCacheFile(ps, total, cancel)
	cf.source, cf.waiting = true, true
	m.setFile(src.TaskID, cf)
	// The probe is not a fill (one short request, no buffer); the read is,
	// and waits for its turn like one.
	t := m.fills.Join()
	m.background(cf, cancel, done, func() Result {
		return m.inTurn(ctx, src, cf, t, func() Result { return m.hashSource(ctx, cancel, src, sp, cf) })
	})
	return Started{HTTPFileLength: sp.length, PieceSize: ps}, nil
}

// span is the bytes of the source a source-pattern task is: the whole
// resource, or the part its Range header names. Pieces are ranges of the
// span, so their digests are over its bytes.
type span struct {
	first, length int64
	ranged        bool
}

// header is the Range that asks for exactly the span.
func (sp span) header() string {
	return "bytes=" + strconv.FormatInt(sp.first, 10) + "-" + strconv.FormatInt(sp.first+sp.length-1, 10)
}

// userRange parses the task's Range header, if it has one. A suffix range
// (bytes=-n) is refused: its start depends on the source's length, which a
// client re-basing a piece's range does not know. The task manager refuses
// it first, when it validates a registration or preheat; this is a guard.
func userRange(src Source) (urlutil.ByteRange, bool, error) {
	br, ranged, err := taskRange(src)
	if err == nil && br.Suffix > 0 {
		err = fmt.Errorf("Range %q: the source pattern cannot serve a suffix range, whose start clients cannot re-base pieces onto; give bytes=a-b",
			rangeHeader(src))
	}
	return br, ranged, err
}

// taskRange parses the task's own Range header (the client's, part of the
// task ID), if it has one; without one the task is the whole resource,
// bytes=0-.
func taskRange(src Source) (urlutil.ByteRange, bool, error) {
	v := rangeHeader(src)
	if v == "" {
		return urlutil.ByteRange{Last: -1}, false, nil
	}
	br, err := urlutil.ParseByteRange(v)
	return br, true, err
}

// rangeHeader is the value of the task's Range header ("" without one),
// whatever the case of its name.
func rangeHeader(src Source) string {
	for k, v := range src.Headers {
		if strings.EqualFold(k, "Range") {
			return v
		}
	}
	return ""
}

// probe asks the source for the span's first byte: the answer tells the
// source's length, so the span's, and that ranges are served, which peers
// fetching pieces rely on.
func (m *Manager) probe(src Source) (span, error) {
	br, ranged, err := userRange(src)
	if err != nil {
		return span{}, err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.SourceTimeout)
	defer cancel()
	resp, err := m.askByte(ctx, src, br.First)
	if err != nil {
		return span{}, err
	}
	cr, err := urlutil.ParseContentRange(resp.Header.Get("Content-Range"))
	if resp.StatusCode != http.StatusPartialContent || err != nil || cr.First != br.First || cr.Total <= 0 {
		return span{}, &SourceError{URL: src.RawURL, Status: resp.StatusCode,
			Err: errors.New("the source pattern needs a source with a known length and range support")}
	}
	last := cr.Total - 1
	if br.Last >= 0 {
		last = min(last, br.Last)
	}
	return span{first: br.First, length: last - br.First + 1, ranged: ranged}, nil
}

// hashSource reads the span once and records the "md5:len" and BLAKE3
// digests of each plain piece (the bytes a client receives for it in this
// pattern), offering each piece as its digest becomes known.
func (m *Manager) hashSource(ctx context.Context, cancel context.CancelFunc, src Source, sp span, cf *cacheFile) Result {
	id := src.TaskID
	start := time.Now()
	var extra map[string]string
	if sp.ranged {
		extra = map[string]string{"Range": sp.header()}
	}
	resp, err := m.get(ctx, src, extra)
	if err != nil {
		return m.fail(id, cf, err)
	}
	defer resp.Body.Close()
	if err := sp.checkRead(resp); err != nil {
		m.countSourceFailure()
		return m.fail(id, cf, &SourceError{URL: src.RawURL, Err: err})
	}
	m.metrics.Download.Inc()
	body := m.watchBody(ctx, cancel, resp.Body)
	cut := &cutter{body: body, url: src.RawURL, size: int64(cf.pieceSize), length: sp.length}
	// md5 always here (see StartSource), sha256 when expected.
	sums := &fileSums{digest.NewWhole(true, !src.Digest.IsZero())}
	buf := make([]byte, cf.pieceSize)
	var rerr error
	for !cut.ended {
		num, n, ok, err := cut.next(buf)
		if err != nil || !ok {
			rerr = err
			break
		}
		_, _ = sums.Write(buf[:n])
		m.setReady(id, cf, num, piece.Md5Value(buf[:n]), n, digest.Sum(digest.BLAKE3, buf[:n]))
	}
	if serr := body.stop(m, src.RawURL); serr != nil {
		rerr = serr
	}
	if rerr != nil {
		return m.fail(id, cf, rerr)
	}
	if err := sums.check(src); err != nil {
		return m.fail(id, cf, err)
	}
	realMd5 := sums.Md5Hex()
	cf.mu.Lock()
	cf.lazy.fileMd5 = realMd5
	cf.mu.Unlock()
	m.end(id, cf, cut.num, sp.length, nil)
	m.log.WithField("task", id).Infof("source digests done: %d bytes in %d pieces, %s", sp.length, cut.num,
		time.Since(start).Round(time.Millisecond))
	return Result{OK: true, RealMd5: realMd5, FileLength: sp.length, PieceTotal: cut.num}
}

// checkRead checks that the digest read's answer is the span's bytes: a
// 200 of the whole resource, or a 206 of exactly the span, so the digests
// are of the bytes clients fetch for the pieces.
func (sp span) checkRead(resp *http.Response) error {
	sized := resp.ContentLength < 0 || resp.ContentLength == sp.length
	cr := resp.Header.Get("Content-Range")
	switch {
	case !sp.ranged && resp.StatusCode == http.StatusOK && sized:
		return nil
	case sp.ranged && resp.StatusCode == http.StatusPartialContent && sized:
		got, err := urlutil.ParseContentRange(cr)
		if err == nil && got.First == sp.first && got.Last == sp.first+sp.length-1 {
			return nil
		}
	}
	want := fmt.Sprintf("200 with the %d bytes it announced", sp.length)
	if sp.ranged {
		want = fmt.Sprintf("206 with %s", strings.Replace(sp.header(), "=", " ", 1))
	}
	return fmt.Errorf("answered %d with %d bytes (Content-Range %q) to the digest read, want %s",
		resp.StatusCode, resp.ContentLength, cr, want)
}
