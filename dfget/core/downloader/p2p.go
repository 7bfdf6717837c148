// Package downloader moves a file's pieces: the P2P pull loop against the
// supernode with parallel piece fetches from peers and the supernode, the
// back-source download, and the writers that receive verified pieces (the
// file writer for the service file or a temp file, the stream writer for
// stdout).
package downloader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// P2P is one P2P download attempt against one supernode.
type P2P struct {
	Client    *api.Client
	Node      string // supernode host:port
	TaskID    string
	CID       string
	PieceSize int32
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
	// fetcher fetches pieces, paced by Limiter (pacedClient).
	fetcher  *api.Client
	initOnce sync.Once
}

// Result is what a finished P2P attempt learned.
type Result struct {
	Finish types.FinishData
	// Pieces is the number of distinct pieces written.
	Pieces int
	// FromPeers counts pieces fetched from peers other than the supernode.
	FromPeers int
}

type event struct {
	num    int
	rng    string
	dstCID string
	ok     bool
	fatal  error
}

// SupernodeError is a P2P attempt ended by its supernode: unreachable, or
// answering codes the protocol does not allow. Another supernode may do.
type SupernodeError struct {
	Node string
	Err  error
}

func (e *SupernodeError) Error() string { return "supernode " + e.Node + ": " + e.Err.Error() }
func (e *SupernodeError) Unwrap() error { return e.Err }

// ErrTaskGone is a supernode answering that it does not know this client
// (/peer/task code 502): it dropped the task (a damaged cache file, a
// restart, GC), so the registration is void. Registering again, at the
// same supernode, starts the task afresh.
var ErrTaskGone = errors.New("the supernode no longer knows this client")

// errNoProgress ends an attempt whose supernode keeps saying "wait" for
// too long without any piece arriving.
var errNoProgress = errors.New("no piece scheduled for too long")

// Run pulls piece tasks until the supernode answers 600, fetching pieces in
// parallel. It returns only after every fetch it started has ended, so a
// caller may fall back to the source as soon as it returns.
func (d *P2P) Run(ctx context.Context) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	events := make(chan event, 256)
	var fetchSlots chan struct{}
	if d.MaxFetch > 0 {
		fetchSlots = make(chan struct{}, d.MaxFetch)
	}
	running := map[int]bool{}
	done := map[int]bool{}
	res := &Result{}
	var fails []event
	var lastOK *event
	started := false
	wait := 0
	lastProgress := time.Now()
	gate, _ := d.Writer.(Gate)
	have, _ := d.Writer.(interface{ Has(num int) bool })

	handle := func(e event) error {
		delete(running, e.num)
		if e.fatal != nil {
			return e.fatal
		}
		if e.ok {
			if !done[e.num] {
				done[e.num] = true
				res.Pieces++
				if !strings.HasPrefix(e.dstCID, types.SuperNodeCIDPrefix) {
					res.FromPeers++
				}
			}
			lastOK = &e
			lastProgress = time.Now()
			wait = 0
		} else {
			fails = append(fails, e)
		}
		return nil
	}
	// drain applies every event already queued without blocking.
	drain := func() error {
		for {
			select {
			case e := <-events:
				if err := handle(e); err != nil {
					return err
				}
			default:
				return nil
			}
		}
	}
	// await blocks for the next event or until d elapses.
	await := func(dur time.Duration) error {
		t := time.NewTimer(dur)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-events:
			if err := handle(e); err != nil {
				return err
			}
			return drain()
		case <-t.C:
			return nil
		}
	}

	for {
		if err := drain(); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		req := api.PullRequest{TaskID: d.TaskID, SrcCID: d.CID, Status: types.TaskStatusRunning}
		switch {
		case !started:
			req.Status, req.Result = types.TaskStatusStart, types.ResultInvalid
		case len(fails) > 0:
			f := fails[0]
			fails = fails[1:]
			req.Result, req.Range, req.DstCID = types.ResultFail, f.rng, f.dstCID
		case lastOK != nil:
			// Each success is reported in one pull only (it also went to
			// /peer/piece/suc); later pulls with nothing new to say use
			// the start status, which every supernode treats as "any work?".
			req.Result, req.Range, req.DstCID = types.ResultSemiSuc, lastOK.rng, lastOK.dstCID
			lastOK = nil
		default:
			req.Status, req.Result = types.TaskStatusStart, types.ResultInvalid
		}
		t0 := time.Now()
		env, err := d.Client.PullPieceTask(ctx, d.Node, req)
		if d.Log.IsLevelEnabled(logrus.DebugLevel) && err == nil {
			d.Log.Debugf("pull status=%d result=%d range=%s -> code %d data %dB in %v, running %d",
				req.Status, req.Result, req.Range, env.Code, len(env.Data), time.Since(t0), len(running))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &SupernodeError{Node: d.Node, Err: fmt.Errorf("pull piece task: %w", err)}
		}
		started = true
		switch env.Code {
		case types.CodePeerContinue, types.CodeSuccess:
			var infos []types.PieceInfo
			if len(env.Data) > 0 && string(env.Data) != "null" {
				if err := json.Unmarshal(env.Data, &infos); err != nil {
					return nil, fmt.Errorf("bad piece task reply: %w", err)
				}
			}
			launched, confirmed := 0, 0
			for _, pi := range infos {
				if pi.PieceSize != 0 && pi.PieceSize != d.PieceSize {
					continue
				}
				if done[pi.PieceNum] || (have != nil && have.Has(pi.PieceNum)) {
					// Re-scheduled piece we already have, or one the
					// writer had before a migration: confirm it.
					d.reportSuccessAsync(ctx, &wg, pi)
					confirmed++
					continue
				}
				if running[pi.PieceNum] {
					continue
				}
				var release func()
				if gate != nil {
					if release, err = gate.Admit(ctx, pi.PieceNum); errors.Is(err, ErrOutOfWindow) {
						fails = append(fails, event{num: pi.PieceNum, rng: pi.Range, dstCID: pi.CID})
						continue
					} else if err != nil {
						return nil, err
					}
				}
				running[pi.PieceNum] = true
				launched++
				wg.Add(1)
				go func(pi types.PieceInfo) {
					defer wg.Done()
					if fetchSlots != nil {
						select {
						case fetchSlots <- struct{}{}:
							defer func() { <-fetchSlots }()
						case <-ctx.Done():
							if release != nil {
								release()
							}
							return
						}
					}
					e := d.fetch(ctx, pi, release)
					// The buffered send comes first: after a finish
					// (600) cancels ctx, a written piece must still be
					// counted, not dropped by a select that picked
					// ctx.Done at random.
					select {
					case events <- e:
					default:
						select {
						case events <- e:
						case <-ctx.Done():
						}
					}
				}(pi)
			}
			switch {
			case launched == 0 && confirmed > 0:
				// Only pieces we have: give the confirmations a moment
				// to land, then ask for more.
				if err := await(20 * time.Millisecond); err != nil {
					return nil, err
				}
			case launched == 0:
				// At our limit or nothing new: wait for a fetch to end.
				if err := await(time.Second); err != nil {
					return nil, err
				}
			}
		case types.CodePeerWait, types.CodePeerLimited:
			if time.Since(lastProgress) > 2*time.Minute && len(running) == 0 {
				return nil, errNoProgress
			}
			lo := 20 << min(wait, 5)
			wait++
			if err := await(time.Duration(lo+rand.IntN(lo)) * time.Millisecond); err != nil {
				return nil, err
			}
		case types.CodePeerFinish:
			if len(env.Data) > 0 {
				if err := json.Unmarshal(env.Data, &res.Finish); err != nil {
					return nil, fmt.Errorf("bad finish reply: %w", err)
				}
			}
			cancel()
			wg.Wait()
			// Pieces whose write raced the finish still count.
			for {
				select {
				case e := <-events:
					if err := handle(e); err != nil {
						return nil, err
					}
					continue
				default:
				}
				break
			}
			return res, nil
		default:
			return nil, d.codeError(env)
		}
	}
}

// codeError is the end of an attempt by a /peer/task code that is not
// part of the pull loop's conversation.
func (d *P2P) codeError(env *api.Envelope) error {
	switch env.Code {
	case types.CodeSourceError:
		return fmt.Errorf("supernode %s: source error: %s", d.Node, env.Msg)
	case types.CodeTargetNotFound:
		return fmt.Errorf("supernode %s: /peer/task code %d (%s): %w", d.Node, env.Code, env.Msg, ErrTaskGone)
	}
	return &SupernodeError{Node: d.Node, Err: fmt.Errorf("/peer/task code %d: %s", env.Code, env.Msg)}
}

// fetch downloads, verifies and writes one piece, reports it, and returns
// the event for the pull loop.
func (d *P2P) fetch(ctx context.Context, pi types.PieceInfo, release func()) event {
	e := event{num: pi.PieceNum, rng: pi.Range, dstCID: pi.CID}
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
	d.init()
	t0 := time.Now()
	b, err := d.fetchTimed(ctx, pi, buf)
	tFetch := time.Since(t0)
	if err != nil {
		if ctx.Err() == nil {
			d.Log.Warnf("piece %d from %s (%s:%d): %v", pi.PieceNum, pi.CID, pi.PeerIP, pi.PeerPort, err)
			d.reportError(ctx, pi, err)
			time.Sleep(20 * time.Millisecond)
		}
		return e
	}
	content := b
	if d.Wrapped {
		content = b[piece.HeadSize : len(b)-1]
	}
	owned = false
	p := &Piece{Num: pi.PieceNum, Range: pi.Range, Content: content, Wrapped: b, release: func() {
		d.pool.Put(buf)
		if release != nil {
			release()
		}
	}}
	n := int64(len(content))
	if pi.PieceMd5 == "" {
		// Only the wrapper vouches for this piece: have the whole file
		// hashed so the final check covers it.
		if h, ok := d.Writer.(interface{ EnableHash() }); ok {
			h.EnableHash()
		}
	}
	if err := d.Writer.WritePiece(ctx, p); err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrOutOfWindow) {
			return e
		}
		e.fatal = err
		return e
	}
	tWrite := time.Since(t0) - tFetch
	if d.OnPiece != nil {
		d.OnPiece(n)
	}
	d.reportSuccess(ctx, pi)
	d.Log.Debugf("piece %d from %s: fetch %v write %v report %v", pi.PieceNum, pi.PeerIP, tFetch, tWrite, time.Since(t0)-tFetch-tWrite)
	e.ok = true
	return e
}

// init prepares what fetches share.
func (d *P2P) init() {
	d.initOnce.Do(func() { d.fetcher = pacedClient(d.Client) })
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
	fctx = context.WithValue(fctx, pacerKey{}, &pacer{l: d.Limiter, clock: clock})
	stop := clock.guard(limit, cancel)
	req := &api.FetchRequest{Info: pi, Wrapped: d.Wrapped, Headers: d.Headers, SourceURL: d.SourceURL}
	b, err := d.fetcher.FetchPiece(fctx, req, buf)
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

// reportSuccess sends /peer/piece/suc, retrying a few times: until the
// supernode has it, no other peer is sent to us for this piece.
func (d *P2P) reportSuccess(ctx context.Context, pi types.PieceInfo) {
	for i := 0; i < 3; i++ {
		err := d.Client.ReportPieceSuccess(ctx, d.Node, d.TaskID, d.CID, pi.CID, pi.Range)
		if err == nil || ctx.Err() != nil {
			return
		}
		d.Log.Debugf("report piece %d success: %v", pi.PieceNum, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(50+rand.IntN(500)) * time.Millisecond):
		}
	}
}

func (d *P2P) reportSuccessAsync(ctx context.Context, wg *sync.WaitGroup, pi types.PieceInfo) {
	wg.Add(1)
	go func() { defer wg.Done(); d.reportSuccess(ctx, pi) }()
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
