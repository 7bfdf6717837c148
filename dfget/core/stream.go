package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
	"github.com/damselfly-p2p/damselfly/dfget/core/uploader"
	"github.com/damselfly-p2p/damselfly/pkg/fileio"
)

// stream downloads to the data writer in order, never touching the disk.
// Verified pieces also go to the peer server's stream cache so other peers
// can fetch them while they are in the window. When the supernode fails
// mid-stream, the stream moves to the next --node and goes on after the
// pieces written once that node's digests prove them its version's
// (resumeStream); only when no node is left is the failure a fallBack,
// and the source continues the stream where P2P left it, once its copy
// of the bytes out proves to be theirs (streamBackSource).
func (d *Download) stream(ctx context.Context) error {
	cfg := d.cfg
	w := downloader.NewStreamWriter(d.io.Data, cfg.WindowSize, cfg.Md5 != "", d.streamSha256())
	pctx, cancel := context.WithTimeout(ctx, cfg.DownloadTimeout(d.length))
	res, closeCache, err := d.streamPieces(ctx, pctx, w)
	var n int64
	var sum string
	if err == nil {
		n, sum, err = w.Wait(pctx, d.pieceCount(res))
	}
	deadline, _ := pctx.Deadline()
	cancel()
	// The peer's part ends before the wait for out, which a reader that
	// stopped reading may make long: its cache is not kept for a stream
	// that will not go on, nor its service announced.
	closeCache()
	d.serviceDown()
	sctx, scancel := context.WithDeadline(ctx, stopDeadline(deadline))
	written, werr := w.Stop(sctx)
	scancel()
	want := int64(-1)
	if err == nil {
		want = d.expectedLength(res) // for a chunked source, the finish knows
	}
	d.streamLength, d.length = d.length, written
	if errors.Is(werr, downloader.ErrConsumerGone) {
		return werr
	}
	if errors.Is(werr, downloader.ErrOutStalled) {
		return fail(config.ReasonDownloadError, werr)
	}
	if err == nil {
		d.fromPeers = res.FromPeers
		if err := checkStream(n, want, sum, cfg.Md5); err != nil {
			return err
		}
		return d.checkStreamDigest(w)
	}
	if werr != nil {
		return werr
	}
	if errors.Is(err, downloader.ErrHeldMismatch) || errors.Is(err, errOtherVersion) {
		// The bytes out are of another version of the file than the
		// new supernode's, and maybe than the source's: nothing may be
		// appended to them.
		return fail(config.ReasonDownloadError, err)
	}
	if errors.Is(err, downloader.ErrHeldUncomparable) {
		d.log.Warnf("stream: cannot tell whether the bytes written are the new supernode's version (%v); going on from the source", err)
	}
	d.log.Warnf("p2p stream failed after %d bytes: %v", written, err)
	d.sw, d.streamed = w, written
	return fallBack(config.ReasonDownloadError, err)
}

// stopStallGrace is how long past the download's deadline (or now, if
// later) the stream writer may still be stuck in a write to out before
// dfget gives up on the reader: --timeout covers a stalled reader too.
const stopStallGrace = 3 * time.Second

// stopDeadline is when StreamWriter.Stop gives up on a stalled out:
// stopStallGrace after the download's deadline, or after now if later.
func stopDeadline(deadline time.Time) time.Time {
	if now := time.Now(); deadline.Before(now) {
		deadline = now
	}
	return deadline.Add(stopStallGrace)
}

// streamPieces runs P2P into w until it ends, moving to another supernode
// (or registering again with one that forgot this client) as stream
// describes. It returns the last attempt's result and error, and the func
// that drops the stream cache then open.
func (d *Download) streamPieces(ctx, pctx context.Context, w *downloader.StreamWriter) (*downloader.Result, func(), error) {
	closeCache := d.openStreamCache(ctx, w)
	for {
		stopAlive := d.keepAlive(pctx)
		res, err := d.newP2P(w).Run(pctx)
		stopAlive()
		var se *downloader.SupernodeError
		gone := errors.Is(err, downloader.ErrTaskGone)
		if err == nil || (!gone && !errors.As(err, &se)) || pctx.Err() != nil {
			return res, closeCache, err
		}
		// The cache reports to the failed supernode (or for the dropped
		// task): drop it, and open one once registered again.
		closeCache()
		if err := d.resumeStream(pctx, w, gone, err); err != nil {
			return res, func() {}, err
		}
		d.log.Infof("stream resumes at piece %d on %s, once it offers the pieces before with their digests", w.Next(), d.reg.Node)
		closeCache = d.openStreamCache(ctx, w)
	}
}

// errOtherVersion is a stream resumed at a supernode whose file has
// another length than the one streamed so far: another version of it.
var errOtherVersion = errors.New("the file changed")

// resumeStream registers for the rest of the stream: again with a
// supernode that forgot this client (gone), else with the next one. When
// it cannot, it returns err, the failure that stopped the stream, extended
// with why when the new registration cuts the file into other pieces
// (errOtherVersion when both lengths are known and differ, or the one
// known is shorter than what was written).
//
// The registration names no startPiece, so the node offers the pieces the
// stream wrote too, and each must have the digest it was verified with
// (P2P.verifyHeld): that is the proof that the node's copy is the version
// the bytes out are of. A node told to start after them (an older
// Damselfly supernode honoured startPiece) would offer none, and another
// version of the same length and piece size would follow their head
// unseen.
func (d *Download) resumeStream(ctx context.Context, w *downloader.StreamWriter, gone bool, err error) error {
	size, src, length := d.reg.Data.PieceSize, d.reg.Data.CDNSource, d.length
	if (gone && !d.reregister(ctx)) || (!gone && !d.migrate(ctx)) {
		return err
	}
	// Held pieces count: they are verified and will be written.
	committed := w.Committed()
	switch {
	case length < 0 && d.length >= committed:
		// The first registration did not know the length (a chunked
		// source), this one does, and it holds what was written.
		d.log.Infof("stream: node %s knows the file's length, %d bytes", d.reg.Node, d.length)
	case d.length < 0 && length >= committed:
		// This node's fill of a chunked source is still running: its
		// length is unknown, not another one. The stream's stands, and
		// the end is checked against it.
		d.log.Infof("stream: node %s does not know the file's length yet; it is %d bytes", d.reg.Node, length)
		d.length = length
	case d.length != length:
		return fmt.Errorf("%w; node %s has a file of %d bytes, the stream so far is of one of %d: %w",
			err, d.reg.Node, d.length, length, errOtherVersion)
	}
	if d.reg.Data.PieceSize != size || d.reg.Data.CDNSource != src {
		// Piece numbers would name other bytes: the source goes on from
		// the byte where the stream stopped instead.
		return fmt.Errorf("%w; node %s now cuts the file into other pieces (size %d, not %d)",
			err, d.reg.Node, d.reg.Data.PieceSize, size)
	}
	return nil
}

// checkStream checks a stream that P2P delivered whole: n bytes, want of
// them (-1: unknown), with md5 sum when the user gave one (wantMd5).
// Every piece was verified before it was written; the whole stream is
// hashed only for --md5, and a mismatch cannot fall back: the bytes are
// already out.
func checkStream(n, want int64, sum, wantMd5 string) error {
	if want >= 0 && n != want {
		return fmt.Errorf("streamed %d bytes, want %d", n, want)
	}
	if wantMd5 != "" && !downloader.EqualMd5(sum, wantMd5) {
		return fail(config.ReasonMd5NotMatch, fmt.Errorf("md5 of the stream is %s, want %s", sum, wantMd5))
	}
	return nil
}

// openStreamCache opens a stream cache on the peer server for the current
// registration and points w's pushes at it; the returned func drops it.
// Without a peer server (or in source-CDN mode) there is no cache.
func (d *Download) openStreamCache(ctx context.Context, w *downloader.StreamWriter) func() {
	cfg := d.cfg
	w.Push = nil
	if d.reg.NoStreamCache {
		d.log.Infof("supernode %s has no stream support: registered as the cdn pattern, no stream cache", d.reg.Node)
		return func() {}
	}
	if d.peerPort <= 0 || d.reg.Data.CDNSource == types.CDNSourceSource {
		return func() {}
	}
	ring, err := d.client.RegisterStreamTask(ctx, d.localIP, d.peerPort, api.StreamTask{
		TaskFileName: cfg.TaskFileName, TaskID: d.reg.Data.TaskID, CID: d.cid, SuperNode: d.reg.Node,
		PieceSize: d.reg.Data.PieceSize, WindowSize: cfg.WindowSize, Creds: d.nodeCreds(), PID: os.Getpid(),
	})
	if err != nil {
		d.log.Warnf("peer server stream cache unavailable: %v", err)
		return func() {}
	}
	var closeRing func()
	w.Push, closeRing = d.streamPusher(ring)
	return func() {
		w.Push = nil
		closeRing()
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if cerr := d.client.CloseStreamTask(cctx, d.localIP, d.peerPort, cfg.TaskFileName); cerr != nil {
			d.log.Debugf("close stream cache: %v", cerr)
		}
	}
}

// streamPusher returns how verified pieces reach the peer server's stream
// cache: written into a slot of the ring the server shares (one copy, no
// HTTP body), or pushed as an HTTP body when there is no ring or a slot
// cannot be had. closeRing releases the ring file. The ring's path and
// slots come from whatever answers on the server's port: only a file that
// proves to be a ring is written (uploader.OpenRing), and only in slots
// inside it; a server that names another slot loses the ring for the
// stream.
func (d *Download) streamPusher(ring api.StreamRing) (push func(context.Context, *downloader.Piece), closeRing func()) {
	name, size := d.cfg.TaskFileName, d.reg.Data.PieceSize
	body := func(ctx context.Context, p *downloader.Piece) {
		if err := d.client.PushStreamPiece(ctx, d.localIP, d.peerPort, name, p.Num, size, p.Wrapped); err != nil {
			d.log.Debugf("push piece %d to stream cache: %v", p.Num, err)
		}
	}
	if ring.Path == "" {
		return body, func() {}
	}
	f, err := uploader.OpenRing(ring.Path, ring.Slots, int(size))
	if err != nil {
		d.log.Warnf("stream ring refused: %v; pushing pieces by HTTP", err)
		return body, func() {}
	}
	var refused atomic.Bool
	push = func(ctx context.Context, p *downloader.Piece) {
		if !refused.Load() {
			err := d.writeSlot(ctx, f, ring.Slots, p)
			if err == nil {
				return
			}
			if errors.Is(err, errBadSlot) && !refused.Swap(true) {
				d.log.Warnf("stream ring: %v; pushing pieces by HTTP", err)
			}
			d.log.Debugf("piece %d to stream ring: %v; pushing it by HTTP", p.Num, err)
		}
		body(ctx, p)
	}
	return push, func() { _ = f.Close() }
}

// errBadSlot is a slot the peer server handed out that is not in its ring,
// or a piece that does not fit one.
var errBadSlot = errors.New("slot outside the ring")

// writeSlot writes piece p into a ring slot the peer server reserves for
// it, and commits it.
func (d *Download) writeSlot(ctx context.Context, f *os.File, slots int, p *downloader.Piece) error {
	name, size := d.cfg.TaskFileName, d.reg.Data.PieceSize
	slot, err := d.client.ReserveStreamSlot(ctx, d.localIP, d.peerPort, name, p.Num)
	if err != nil {
		return err
	}
	if slot < 0 || slot >= slots || len(p.Wrapped) > int(size) {
		// Not committed: a server that is not sure of its ring's slots
		// keeps this one until its reservation expires.
		return fmt.Errorf("%w: slot %d of %d for %d bytes", errBadSlot, slot, slots, len(p.Wrapped))
	}
	n := len(p.Wrapped)
	if _, werr := fileio.WriteAt(f, p.Wrapped, int64(slot)*int64(size)); werr != nil {
		// A length of 0 fails the commit's checks, which frees the
		// slot: a half-written slot is never cached.
		n, err = 0, fmt.Errorf("write ring slot %d: %w", slot, werr)
	}
	if cerr := d.client.CommitStreamSlot(ctx, d.localIP, d.peerPort, name, p.Num, slot, n); err == nil {
		err = cerr
	}
	return err
}

// streamBackSource continues the stream from the source after the bytes
// P2P streamed, so no byte already written is repeated or skipped. The
// source is read from byte 0: the bytes already out are checked against
// the digests their pieces were verified with, never written again, and
// a source whose copy of them differs, or whose file has another length,
// fails the download: the bytes out cannot be taken back, so no further
// fallback helps. A Range from the first byte not yet out would take
// another version's tail on trust. onBytes counts the bytes read.
func (d *Download) streamBackSource(ctx context.Context, src *downloader.BackSource, onBytes func(int64)) error {
	if d.sw == nil {
		// No P2P attempt wrote anything: a stopped writer still maps EPIPE
		// and keeps the --md5 hash.
		d.sw = downloader.NewStreamWriter(d.io.Data, 1, d.cfg.Md5 != "", d.streamSha256())
		_, _ = d.sw.Stop(ctx)
	}
	out, err := d.sw.Continue(ctx, stopStallGrace)
	if err != nil {
		return err
	}
	// After bytes of the registered file are out, the source must hold a
	// file of its length (the check the migration path makes,
	// errOtherVersion). From byte 0 its file, whatever its length, is a
	// whole version, as in the file mode.
	head, want := d.streamed, int64(-1)
	if head > 0 {
		want = d.streamLength
	}
	n, err := src.Copy(ctx, out, want, onBytes)
	d.length = max(n, head) // n counts the head again
	if err == nil {
		err = out.Checked()
	}
	if err != nil {
		if errors.Is(err, downloader.ErrConsumerGone) {
			return downloader.ErrConsumerGone
		}
		return err
	}
	if sum := d.sw.Sum(); d.cfg.Md5 != "" && !downloader.EqualMd5(sum, d.cfg.Md5) {
		return fmt.Errorf("md5 of the stream is %s, want %s", sum, d.cfg.Md5)
	}
	return d.checkStreamDigest(d.sw)
}

// afterFirst is add without the first skip bytes it is told of: the
// progress bar counted what P2P brought, which a fallback reads again.
func afterFirst(skip int64, add func(int64)) func(int64) {
	return func(n int64) {
		s := min(n, skip)
		skip -= s
		if n > s {
			add(n - s)
		}
	}
}

// streamSha256 reports whether the stream hashes its bytes for --digest.
func (d *Download) streamSha256() bool { return !d.digest.IsZero() && !d.io.DataChecksDigest }

// checkStreamDigest compares the stream's sha256 with --digest, if given.
// The bytes are out by then (a stream holds only its window): a mismatch
// is the run's failure, its non-zero exit what tells the consumer.
func (d *Download) checkStreamDigest(w *downloader.StreamWriter) error {
	if !d.streamSha256() {
		return nil
	}
	if err := d.digest.Check(w.Sha256()); err != nil {
		return fail(config.ReasonMd5NotMatch, fmt.Errorf("stream: %w", err))
	}
	return nil
}
