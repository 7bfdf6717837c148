// Package downloader moves a file's pieces: the pull loop against the
// supernode (PullLoop), the P2P fetch of each piece from a peer or the
// supernode with its verification (P2P), the back-source download
// (Source), and the writers that receive verified pieces (the file writer
// for the service file or a temp file, the stream writer for stdout).
package downloader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// P2P is one P2P download attempt against one supernode: the pull loop
// with the fetch of real pieces from their holders into Writer.
type P2P struct {
	Client *api.Client
	Task
	// Wrapped is false when the supernode's cdnSource is "source".
	Wrapped bool
	// Headers go to holders in source-CDN mode.
	Headers map[string]string
	// SourceURL is the download's URL: in source-CDN mode a piece without
	// a digest is fetched from it, never from a peer (api.FetchRequest).
	SourceURL string
	Writer    Writer
	Limiter   *xrate.Limiter
	Log       *logrus.Logger
	// OnPiece is called with each written piece's content length.
	OnPiece func(n int64)
	// MaxFetch caps the pieces fetched at once (--clientqueue), which
	// bounds piece buffers; the supernode's own per-client limit usually
	// binds first. 0 means no cap.
	MaxFetch int

	pool api.BufferPool
	slow slowGuard
	// sourceFails counts the source's wrong-shaped answers since the last
	// piece written (maxSourceFails).
	sourceFails atomic.Int32
}

// maxSourceFails is how many wrong-shaped answers from the source (a
// proxy or server that ignores Range) in a row end the attempt. They are
// not reported as digest mismatches (the task's digests are fine), so the
// supernode would offer the same pieces from the same source again until
// the download's timeout, hours for a large file: the source fallback
// ends it instead.
const maxSourceFails = 3

// WholeFileHasher is implemented by writers that can compute the
// whole-file md5 when asked. A cdn-mode piece that came without a digest
// of its own is vouched for only by its wrapper: the final check of the
// whole file must then cover it, and there must be an md5 to check it
// against (RequireHash). A source-CDN piece without one came from the
// download's own URL (api's target), as trusted as a back-source download:
// it is hashed, checked only against an md5 if there is one (EnableHash).
type WholeFileHasher interface {
	EnableHash()
	RequireHash()
}

// heldReader is implemented by writers that can read back a piece they
// hold (the file writer) and drop it when it is not the file's.
type heldReader interface {
	ReadPiece(num int) ([]byte, error)
	Drop(num int)
}

// heldDigests is implemented by writers that cannot read back what they
// wrote (the stream writer) but remember the digest each piece was
// verified with.
type heldDigests interface {
	PieceDigest(num int) string
}

// ErrHeldMismatch is a piece already streamed out that a new supernode
// offers with another digest: its copy is another version of the file,
// and the bytes out cannot be taken back.
var ErrHeldMismatch = errors.New("a piece already written does not match the new supernode's digest")

// ErrHeldUncomparable is a piece already streamed out that a new
// supernode offers with a digest in another algorithm than the one it
// was verified with (a Dragonfly 1.x supernode's md5 against a Damselfly
// one's BLAKE3), or where either side has none: nothing is proven either
// way, so the stream does not fail but goes on from the source.
var ErrHeldUncomparable = errors.New("a piece already written cannot be compared with the new supernode's digest")

// Run pulls piece tasks until the supernode answers 600, fetching pieces in
// parallel into the writer (PullLoop). It returns only after every fetch
// it started has ended, so a caller may fall back to the source as soon
// as it returns.
func (d *P2P) Run(ctx context.Context) (*Result, error) {
	gate, _ := d.Writer.(Gate)
	have, _ := d.Writer.(HasPieces)
	// A writer that keeps only digests wrote its held pieces out.
	_, gone := d.Writer.(heldDigests)
	l := &PullLoop{Supernode: d.Client, Task: d.Task, Fetch: d.fetch, Verify: d.verifyHeld, Gate: gate, Have: have,
		HeldUnshared: gone, MaxFetch: d.MaxFetch, Log: d.Log}
	return l.Run(ctx)
}

// fetch downloads, verifies and writes one piece (a FetchFunc); the pull
// loop reports it.
func (d *P2P) fetch(ctx context.Context, pi types.PieceInfo, release func()) (bool, error) {
	if pi.PieceSize == 0 {
		pi.PieceSize = d.PieceSize
	}
	buf := d.pool.Get(int(d.PieceSize))
	owned := true
	defer func() {
		if owned {
			d.pool.Put(buf)
			if release != nil {
				release()
			}
		}
	}()
	t0 := time.Now()
	b, err := d.fetchTimed(ctx, pi, buf)
	tFetch := time.Since(t0)
	if errors.Is(err, api.ErrNoDigest) && d.uncovered() {
		// Only the supernode could serve the piece (peers are not
		// trusted without a digest either), and nothing would check
		// its bytes before they are out: the attempt ends, and the
		// stream goes on from the source.
		return false, fmt.Errorf("stream: %w", err)
	}
	if errors.Is(err, api.ErrSourceReply) && d.sourceFails.Add(1) >= maxSourceFails {
		return false, fmt.Errorf("%d answers from the source in a row not the range asked for: %w", maxSourceFails, err)
	}
	if err != nil {
		if ctx.Err() == nil {
			d.Log.Warnf("piece %d from %s (%s:%d): %v", pi.PieceNum, pi.CID, pi.PeerIP, pi.PeerPort, err)
			d.reportError(ctx, pi, err)
			// The failure reaches the supernode with the next pull: a
			// moment first, so a holder failing at once is not asked
			// again in a tight loop.
			_ = sleep(ctx, 20*time.Millisecond)
		}
		return false, nil
	}
	content := b
	if d.Wrapped {
		content = b[piece.HeadSize : len(b)-1]
	}
	owned = false
	p := &Piece{Num: pi.PieceNum, NoShare: pi.NoShare, Info: pi, Raw: !d.Wrapped, Content: content, Wrapped: b, release: func() {
		d.pool.Put(buf)
		if release != nil {
			release()
		}
	}}
	n := int64(len(content))
	if h, ok := d.Writer.(WholeFileHasher); ok && pi.PieceMd5 == "" && pi.PieceDigest == "" {
		if d.Wrapped {
			h.RequireHash()
		} else {
			h.EnableHash()
		}
	}
	if err := d.Writer.WritePiece(ctx, p); err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrOutOfWindow) {
			return false, nil
		}
		return false, err
	}
	d.sourceFails.Store(0)
	if d.OnPiece != nil {
		d.OnPiece(n)
	}
	d.Log.Debugf("piece %d from %s: fetch %v write %v", pi.PieceNum, pi.PeerIP, tFetch, time.Since(t0)-tFetch)
	return true, nil
}

// uncovered reports that no whole-file md5 will check the pieces after
// they are written (the writer is a stream's): a wrapped piece without a
// digest cannot be taken even from the supernode.
func (d *P2P) uncovered() bool {
	_, ok := d.Writer.(WholeFileHasher)
	return !ok
}

// verifyHeld checks a piece the writer held before this attempt (a
// VerifyFunc): read back from a file and checked against pi's digest (a
// mismatch drops it, to be fetched again); for a stream, whose bytes are
// out, the digest it was verified with must be pi's: a different one in
// the same algorithm fails the stream rather than go on with another
// version's bytes (ErrHeldMismatch); one that cannot be compared ends
// the attempt with ErrHeldUncomparable.
func (d *P2P) verifyHeld(_ context.Context, pi types.PieceInfo) (bool, error) {
	if pi.PieceSize == 0 {
		pi.PieceSize = d.PieceSize
	}
	switch w := d.Writer.(type) {
	case heldReader:
		content, err := w.ReadPiece(pi.PieceNum)
		if err != nil {
			return false, err
		}
		if err := api.VerifyHeld(pi, d.Wrapped, content); err != nil {
			d.Log.Warnf("piece %d written before: %v; fetching it again", pi.PieceNum, err)
			w.Drop(pi.PieceNum)
			return false, nil
		}
		return true, nil
	case heldDigests:
		had, want := w.PieceDigest(pi.PieceNum), pieceDigest(pi)
		switch {
		case had != "" && strings.EqualFold(had, want):
			return true, nil
		case had == "" || want == "" || !sameAlgorithm(had, want):
			return false, fmt.Errorf("piece %d (digest %q, %s offers %q): %w", pi.PieceNum, had, d.Node, want, ErrHeldUncomparable)
		}
		return false, fmt.Errorf("piece %d (digest %q, %s offers %q): %w", pi.PieceNum, had, d.Node, want, ErrHeldMismatch)
	}
	return false, nil
}

// pieceDigest is the digest a piece is verified with, as api's verifier
// picks it: pieceDigest, else pieceMd5; "" with neither.
func pieceDigest(pi types.PieceInfo) string {
	if pi.PieceDigest != "" {
		return pi.PieceDigest
	}
	if pi.PieceMd5 != "" {
		return "md5:" + pi.PieceMd5
	}
	return ""
}

// sameAlgorithm reports whether two digests as pieceDigest writes them
// ("<algorithm>:...") are in the same algorithm, so that a difference
// between them proves different bytes.
func sameAlgorithm(a, b string) bool {
	x, _, _ := strings.Cut(a, ":")
	y, _, _ := strings.Cut(b, ":")
	return strings.EqualFold(x, y)
}

// fetchTimed fetches one piece under the slow-holder guard: a fetch whose
// holder's share of the time (the time not spent waiting on our own
// limiter) passes the guard's limit is cancelled and fails as "too slow";
// any other failure keeps its own error.
func (d *P2P) fetchTimed(ctx context.Context, pi types.PieceInfo, buf *[]byte) ([]byte, error) {
	limit := supernodeFetchLimit
	fromPeer := !strings.HasPrefix(pi.CID, types.SuperNodeCIDPrefix)
	if fromPeer {
		limit = min(limit, d.slow.limit())
	}
	clock := newHolderClock()
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := clock.guard(limit, cancel)
	req := &api.FetchRequest{Info: pi, Wrapped: d.Wrapped, Headers: d.Headers, SourceURL: d.SourceURL,
		Uncovered: d.uncovered(), Pace: paced(fctx, d.Limiter, clock)}
	b, err := d.Client.FetchPiece(fctx, req, buf)
	stop()
	if err == nil {
		d.slow.observe(clock.elapsed())
		return b, nil
	}
	if errors.Is(context.Cause(fctx), errHolderSlow) && ctx.Err() == nil {
		return nil, fmt.Errorf("gave up after %v of the holder's time (fetch elsewhere): %w", limit.Round(time.Millisecond), err)
	}
	return nil, err
}

// reportError tells the supernode about a holder that sent a bad piece or
// none, so it stops sending peers there.
func (d *P2P) reportError(ctx context.Context, pi types.PieceInfo, err error) {
	pe := api.PieceError{TaskID: d.TaskID, SrcCID: d.CID, DstCID: pi.CID, DstIP: pi.PeerIP, Range: pi.Range}
	var mm *api.Md5MismatchError
	switch {
	case errors.As(err, &mm):
		pe.ErrorType, pe.RealMd5, pe.ExpectedMd5 = types.PieceErrorFileMd5NotMatch, mm.Real, mm.Expected
	case errors.Is(err, api.ErrPieceNotFound):
		pe.ErrorType = types.PieceErrorFileNotExist
	default:
		return
	}
	if rerr := d.Client.ReportPieceError(ctx, d.Node, pe); rerr != nil {
		d.Log.Warnf("report piece error: %v", rerr)
		return
	}
	d.Log.Infof("reported %s for piece %d from %s", pe.ErrorType, pi.PieceNum, pi.CID)
}
