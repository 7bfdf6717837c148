package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
	"github.com/damselfly-p2p/damselfly/pkg/fileio"
)

// stream downloads to the data writer in order, never touching the disk.
// Verified pieces also go to the peer server's stream cache so other peers
// can fetch them while they are in the window. When the supernode fails
// mid-stream, the stream moves to the next --node and resumes at the first
// piece not yet written; only when no node is left does it fall back to
// the source.
func (d *Download) stream(ctx context.Context) error {
	cfg := d.cfg
	w := downloader.NewStreamWriter(d.io.Data, cfg.WindowSize, cfg.Md5 != "")
	pctx, cancel := context.WithTimeout(ctx, cfg.DownloadTimeout(d.length))
	var res *downloader.Result
	var err error
	closeCache := d.openStreamCache(ctx, w)
	for {
		stopAlive := d.keepAlive(pctx)
		res, err = d.p2p(w).Run(pctx)
		stopAlive()
		var se *downloader.SupernodeError
		gone := errors.Is(err, downloader.ErrTaskGone)
		if err == nil || (!gone && !errors.As(err, &se)) || pctx.Err() != nil {
			break
		}
		// The cache reports to the failed supernode (or for the dropped
		// task): drop it, and open one once registered again. A supernode
		// that forgot us is asked again; a failed one is left for the next.
		closeCache()
		d.regReq.StartPiece = w.Next()
		size, src, length := d.reg.Data.PieceSize, d.reg.Data.CDNSource, d.length
		if (gone && !d.reregister(pctx)) || (!gone && !d.migrate(pctx)) {
			closeCache = func() {}
			break
		}
		if d.reg.Data.PieceSize != size || d.reg.Data.CDNSource != src || d.length != length {
			// Piece numbers would name other bytes: the source goes on
			// from the byte where the stream stopped instead.
			err = fmt.Errorf("%w; node %s now cuts the file into other pieces (size %d, not %d; length %d, not %d)",
				err, d.reg.Node, d.reg.Data.PieceSize, size, d.length, length)
			closeCache = func() {}
			break
		}
		d.log.Infof("stream resumes at piece %d on %s", d.regReq.StartPiece, d.reg.Node)
		closeCache = d.openStreamCache(ctx, w)
	}
	var n int64
	var sum string
	if err == nil {
		n, sum, err = w.Wait(pctx, d.pieceCount(res))
	}
	cancel()
	written, werr := w.Stop()
	closeCache()
	want := int64(-1)
	if err == nil {
		want = d.expectedLength(res) // for a chunked source, the finish knows
	}
	d.serviceDown()
	d.length = written
	if errors.Is(werr, downloader.ErrConsumerGone) {
		return werr
	}
	if err == nil {
		d.fromPeers = res.FromPeers
		if want >= 0 && n != want {
			return fmt.Errorf("streamed %d bytes, want %d", n, want)
		}
		// Every piece was verified before it was written; the whole
		// stream is hashed only when the user gave --md5.
		if want := cfg.Md5; want != "" && !downloader.EqualMd5(sum, want) {
			d.reason = config.ReasonMd5NotMatch
			return fmt.Errorf("md5 of the stream is %s, want %s", sum, want)
		}
		return nil
	}
	if werr != nil {
		return werr
	}
	d.log.Warnf("p2p stream failed after %d bytes: %v", written, err)
	d.reason = config.ReasonDownloadError
	d.sw = w
	return d.backSource(ctx, err, written)
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
// cannot be had. closeRing releases the ring file.
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
	f, err := os.OpenFile(ring.Path, os.O_RDWR, 0)
	if err != nil {
		d.log.Infof("stream ring %s: %v; pushing pieces by HTTP", ring.Path, err)
		return body, func() {}
	}
	push = func(ctx context.Context, p *downloader.Piece) {
		slot, err := d.client.ReserveStreamSlot(ctx, d.localIP, d.peerPort, name, p.Num)
		if err == nil {
			n := len(p.Wrapped)
			if _, werr := fileio.WriteAt(f, p.Wrapped, int64(slot)*int64(size)); werr != nil {
				// A length of 0 fails the commit's checks, which frees
				// the slot: a half-written slot is never cached.
				n, err = 0, fmt.Errorf("write ring slot %d: %w", slot, werr)
			}
			if cerr := d.client.CommitStreamSlot(ctx, d.localIP, d.peerPort, name, p.Num, slot, n); err == nil {
				err = cerr
			}
		}
		if err != nil {
			d.log.Debugf("piece %d to stream ring: %v; pushing it by HTTP", p.Num, err)
			body(ctx, p)
		}
	}
	return push, func() { _ = f.Close() }
}

// streamBackSource continues the stream from the source at off, so no byte
// already written is repeated or skipped.
func (d *Download) streamBackSource(ctx context.Context, src *downloader.Source, off int64) error {
	if d.sw == nil {
		// No P2P attempt wrote anything: a stopped writer still maps EPIPE
		// and keeps the --md5 hash.
		d.sw = downloader.NewStreamWriter(d.io.Data, 1, d.cfg.Md5 != "")
		_, _ = d.sw.Stop()
	}
	out, sum := d.sw.Continue(), d.sw.Sum
	n, err := src.Copy(ctx, out, off, d.bar.Add)
	d.length = off + n
	if err != nil {
		if errors.Is(err, downloader.ErrConsumerGone) {
			return downloader.ErrConsumerGone
		}
		return err
	}
	if d.cfg.Md5 != "" && !downloader.EqualMd5(sum(), d.cfg.Md5) {
		return fmt.Errorf("md5 of the stream is %s, want %s", sum(), d.cfg.Md5)
	}
	return nil
}
