package cdn

// The length a fill that waits for its turn (fills.go) answers its
// registrations with. Clients take their P2P timeout (dfget: 5 minutes for
// an unknown length), their piece count and their checks from it, and the
// piece size follows it, so a fill in line learns it as Dragonfly 1.x's
// supernode does for every new task: it asks the source for it, once per
// fill (the task's later registrations find it RUNNING and reuse it).

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// lengthProbeTimeout bounds the probe, as v1 bounds its registration's: a
// slow source costs the registration this at most, and the fill then
// answers with the length unknown.
const lengthProbeTimeout = 4 * time.Second

// queuedLength is the task's content length for a fill that waits (-1 when
// unknown). The origin is asked for one byte with the request the fill
// will send (askByte): a source that refuses it (404, 401, a refused
// address...) fails the registration, as it fails a fill with a slot. A
// probe that times out, or that is answered 416 (the probe's own Range: an
// empty file), leaves the length unknown. A task read from a cluster home
// asks the home instead, never the origin (homeLength).
func (m *Manager) queuedLength(src Source) (int64, error) {
	if src.Via != "" {
		return m.homeLength(m.ctx, src), nil // homeInfo bounds its request
	}
	ctx, cancel := context.WithTimeout(m.ctx, min(m.cfg.SourceTimeout, lengthProbeTimeout))
	defer cancel()
	resp, err := m.askByte(ctx, src, 0)
	if err == nil {
		return probedLength(src, resp), nil
	}
	if inconclusive(err) {
		m.log.WithField("task", src.TaskID).WithError(err).Info("waiting fill: length probe inconclusive, answering it unknown")
		return -1, nil
	}
	return 0, err
}

// inconclusive reports whether a probe's failure says nothing of the fill's
// request: its own deadline, shorter than a fill's, or its own Range.
func inconclusive(err error) bool {
	var ne net.Error
	var se *SourceError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		(errors.As(err, &ne) && ne.Timeout()) ||
		(errors.As(err, &se) && se.Status == http.StatusRequestedRangeNotSatisfiable)
}

// probedLength is the task's content length by the probe's answer: the
// total of a 206's Content-Range, or a 200's Content-Length (a source that
// ignores Range), narrowed to the task's own Range as the fill's answer
// will be; -1 when the answer does not tell it (chunked, "/*").
func probedLength(src Source, resp *http.Response) int64 {
	total := resp.ContentLength
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusPartialContent:
		cr, err := urlutil.ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || cr.First != 0 {
			return -1
		}
		total = cr.Total
	default:
		return -1
	}
	br, ranged, err := taskRange(src)
	switch {
	case total < 0 || err != nil:
		return -1
	case !ranged:
		return total
	}
	_, length, err := br.InWhole(total)
	if err != nil {
		return -1
	}
	return length
}

// homeLength is the length the task's cluster home gave the task (-1 when
// it has none, or cannot be asked): the task's info, read from the home
// (homeInfo), which starts no fill there and sends no request to the
// origin. Asking the origin here would add an origin request per member
// for a file the members read from the home; asking the home for the file
// (a cluster fetch) would start the home's fill even if nobody is left to
// want it when this fill's turn comes.
func (m *Manager) homeLength(ctx context.Context, src Source) int64 {
	info, _, err := m.homeInfo(ctx, src)
	if err != nil {
		m.log.WithField("task", src.TaskID).WithField("member", src.Via).WithError(err).Info("waiting fill: the home did not tell its length")
		return -1
	}
	if info.HTTPFileLength < 0 || (info.CdnStatus != types.CDNStatusRunning && info.CdnStatus != types.CDNStatusSuccess) {
		return -1
	}
	return info.HTTPFileLength
}
