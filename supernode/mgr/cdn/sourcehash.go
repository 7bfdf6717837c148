package cdn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// StartSource is the "source" CDN pattern: nothing is cached and every
// piece is a plain range of the source that peers fetch from the source
// directly, as in v1. Unlike v1, the supernode reads the source once,
// streaming and storing nothing, to learn each piece's digests and the
// whole-file md5: md5 is computed here for every task, beside BLAKE3,
// because nothing is stored to compute it from later when a Dragonfly 1.x
// client asks (the source could have changed by then). A piece is offered only once its digest is known, so no
// client ever takes a piece it cannot check, and a source that fails
// during that read fails the task as a CDN failure does. It returns once
// the source has told its length (it must serve ranges: 206 to bytes=0-0);
// done is called from another goroutine when the read ends.
func (m *Manager) StartSource(src Source, done func(Result)) (Started, error) {
	if m.ctx.Err() != nil {
		return Started{}, errors.New("cdn manager is closed")
	}
	length, err := m.probe(src)
	if err != nil {
		return Started{}, err
	}
	ps := piece.ComputeSize(length)
	total := int((length + int64(ps) - 1) / int64(ps))
	m.progress.ResetCDN(src.TaskID)
	ctx, cancel := context.WithCancel(m.ctx)
	cf := newCacheFile(ps, total, cancel)
	cf.source = true
	m.setFile(src.TaskID, cf)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		done(m.hashSource(ctx, cancel, src, length, cf))
	}()
	return Started{HTTPFileLength: length, PieceSize: ps}, nil
}

// probe asks the source for its first byte: the answer tells the length
// and that ranges are served, which peers fetching pieces rely on.
func (m *Manager) probe(src Source) (int64, error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.SourceTimeout)
	defer cancel()
	resp, err := m.get(ctx, src, map[string]string{"Range": "bytes=0-0"})
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	length := totalFromContentRange(resp.Header.Get("Content-Range"))
	if resp.StatusCode != http.StatusPartialContent || length <= 0 {
		return 0, &SourceError{URL: src.RawURL, Status: resp.StatusCode,
			Err: errors.New("the source pattern needs a source with a known length and range support")}
	}
	return length, nil
}

// hashSource reads the whole source once and records the "md5:len" and
// BLAKE3 digests of each plain piece (the bytes a client receives for it in this pattern),
// offering each piece as its digest becomes known.
func (m *Manager) hashSource(ctx context.Context, cancel context.CancelFunc, src Source, length int64, cf *cacheFile) Result {
	id := src.TaskID
	start := time.Now()
	resp, err := m.get(ctx, wholeSource(src), nil)
	if err != nil {
		return m.fail(id, cf, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || (resp.ContentLength >= 0 && resp.ContentLength != length) {
		m.countSourceFailure()
		return m.fail(id, cf, &SourceError{URL: src.RawURL, Err: fmt.Errorf(
			"answered %d with %d bytes to the digest read, want 200 with the %d bytes it announced",
			resp.StatusCode, resp.ContentLength, length)})
	}
	m.metrics.Download.Inc()
	body := m.watchBody(ctx, cancel, resp.Body)
	cut := &cutter{body: body, url: src.RawURL, size: int64(cf.pieceSize), length: length}
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
	m.end(id, cf, cut.num, length, nil)
	m.log.WithField("task", id).Infof("source digests done: %d bytes in %d pieces, %s", length, cut.num,
		time.Since(start).Round(time.Millisecond))
	return Result{OK: true, RealMd5: realMd5, FileLength: length, PieceTotal: cut.num}
}

// wholeSource is src without a user Range header: the pieces peers fetch
// are ranges of the whole resource (the probe's total), so the digests are
// too.
func wholeSource(src Source) Source {
	h := make(map[string]string, len(src.Headers))
	for k, v := range src.Headers {
		if !strings.EqualFold(k, "Range") {
			h[k] = v
		}
	}
	src.Headers = h
	return src
}
