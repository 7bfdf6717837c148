package downloader

//go:generate go tool mockgen -source=pull.go -destination=mock_pull_test.go -package=downloader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
)

// Supernode is the part of the supernode's API the pull loop talks to.
// *api.Client is one; the load benchmark plugs in its own keep-alive
// client so that it drives this very loop.
type Supernode interface {
	// PullPieceTask asks for work (GET /peer/task) and returns the
	// envelope as is: the loop dispatches on its code.
	PullPieceTask(ctx context.Context, node string, r api.PullRequest) (*api.Envelope, error)
	// ReportPieceSuccess tells the supernode that this client holds a
	// piece (GET /peer/piece/suc); without share, that it serves it to no
	// one (a stream's piece the supernode said noShare for).
	ReportPieceSuccess(ctx context.Context, node, taskID, cid, dstCID, pieceRange string, share bool) error
}

var _ Supernode = (*api.Client)(nil)

// Gate is implemented by writers that bound how many pieces may be in
// flight (the stream writer's window): Admit blocks until piece num may be
// fetched, and returns a release for when the fetch failed.
type Gate interface {
	Admit(ctx context.Context, num int) (release func(), err error)
}

// HasPieces is implemented by writers that know which pieces they already
// hold. After a migration the new supernode knows nothing of the pieces
// written before and offers them again; the pull loop has such a piece
// checked against the new supernode's digest (VerifyFunc) before it
// confirms it, since the new supernode's copy may be another version of
// the file.
type HasPieces interface {
	Has(num int) bool
}

// FetchFunc gets one piece handed out by the supernode into the download:
// fetch it from its holder, verify it and write it. It reports whether the
// piece was written. A piece that was not, with a nil error (holder gone,
// bad digest, too slow), is reported failed on the next pull so that the
// supernode schedules it elsewhere; an error ends the attempt (the writer
// cannot go on). release, when not nil, gives back the piece's admission
// (Gate): the fetch calls it when the piece does not reach the writer.
type FetchFunc func(ctx context.Context, pi types.PieceInfo, release func()) (written bool, err error)

// VerifyFunc checks a piece the writer held before this attempt against
// the digest the supernode offering it gives (pi). ok: the piece is the
// supernode's and is confirmed to it. Not ok with a nil error: the writer
// dropped it and it is fetched like any other. An error ends the attempt
// (a stream cannot take back the bytes it wrote).
type VerifyFunc func(ctx context.Context, pi types.PieceInfo) (ok bool, err error)

// PullLoop is one conversation with one supernode over GET /peer/task: it
// pulls piece tasks until the supernode answers 600, fetching the pieces
// handed out in parallel and reporting each written one.
type PullLoop struct {
	Supernode Supernode
	Task
	Fetch FetchFunc
	// Gate and Have are the writer's optional capabilities; nil when it
	// has none.
	Gate Gate
	Have HasPieces
	// Verify checks a held piece before it is confirmed; without it a
	// held piece is fetched again, never confirmed unchecked.
	Verify VerifyFunc
	// HeldUnshared confirms held pieces with share=0: the writer's peer
	// server cannot serve them (a stream's, written before this attempt,
	// are in no stream cache: the one open now is this attempt's).
	HeldUnshared bool
	// MaxFetch caps the pieces fetched at once; 0 means no cap.
	MaxFetch int
	// NoProgressLimit bounds how long the supernode may answer without
	// progress while nothing runs here (see pullState.stuck); 0 means
	// DefaultNoProgressLimit.
	NoProgressLimit time.Duration
	// Log may be nil: nothing is logged.
	Log *logrus.Logger
}

// Task is this client's registration with one supernode, which the pull
// loop and the P2P fetch both go by.
type Task struct {
	Node   string // supernode host:port
	TaskID string
	CID    string
	// PieceSize is the task's; a piece of another size is not this task's.
	PieceSize int32
}

// Result is what a finished P2P attempt learned.
type Result struct {
	Finish types.FinishData
	// Pieces is the number of distinct pieces written.
	Pieces int
	// FromPeers counts pieces fetched from peers other than the supernode.
	FromPeers int
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

// errNoProgress ends an attempt whose supernode keeps answering without
// progress (603, or a 601 that starts nothing) while nothing runs here.
var errNoProgress = errors.New("no piece scheduled for too long")

// DefaultNoProgressLimit is how long an attempt may go on with nothing
// running, no piece arriving and no 602 (pullState.stuck).
const DefaultNoProgressLimit = 2 * time.Minute

// Run pulls piece tasks until the supernode answers 600. It returns only
// after every fetch it started has ended, so a caller may fall back to
// the source as soon as it returns.
func (l *PullLoop) Run(ctx context.Context) (*Result, error) {
	s := newPullState(ctx, l)
	defer s.stop()
	for {
		req, err := s.next()
		if err != nil {
			return nil, err
		}
		env, err := s.pull(req)
		if err != nil {
			return nil, err
		}
		switch env.Code {
		case types.CodePeerContinue, types.CodeSuccess:
			err = s.launch(env)
		case types.CodePeerWait, types.CodePeerLimited:
			err = s.backOff(env.Code)
		case types.CodePeerFinish:
			return s.finish(env)
		default:
			err = s.codeError(env)
		}
		if err != nil {
			return nil, err
		}
	}
}

// event is the end of one piece's fetch.
type event struct {
	num    int
	rng    string
	dstCID string
	ok     bool
	fatal  error
	// held: the piece was written before this attempt and checked, not
	// fetched.
	held bool
}

// pullState is the pull loop's state over one Run: the pieces running and
// done, what the next pull reports, and the back-off.
type pullState struct {
	l      *PullLoop
	log    *logrus.Logger
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the fetches (queued or running), their workers and the
	// confirmation goroutines.
	wg     sync.WaitGroup
	events chan event
	// fetches is the fetch queue of the MaxFetch workers (see enqueue).
	fetches fetchQueue
	running map[int]bool
	done    map[int]bool
	res     Result
	// fails are the failed pieces not reported yet, one per pull.
	fails []event
	// lastOK is the last success not reported in a pull yet.
	lastOK  *event
	started bool
	// wait is the back-off exponent, reset by a piece arriving.
	wait int
	// lastProgress is when a piece last arrived or the supernode last
	// answered 602; limit is the loop's NoProgressLimit.
	lastProgress time.Time
	limit        time.Duration
}

func newPullState(ctx context.Context, l *PullLoop) *pullState {
	s := &pullState{l: l, log: l.Log, events: make(chan event, 256), running: map[int]bool{}, done: map[int]bool{},
		lastProgress: time.Now(), limit: l.NoProgressLimit}
	if s.limit <= 0 {
		s.limit = DefaultNoProgressLimit
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	if s.log == nil {
		s.log = logrus.New()
		s.log.SetOutput(io.Discard)
	}
	s.fetches.cond = sync.NewCond(&s.fetches.mu)
	context.AfterFunc(s.ctx, func() {
		s.fetches.mu.Lock()
		s.fetches.cond.Broadcast()
		s.fetches.mu.Unlock()
	})
	return s
}

// stop ends every fetch and confirmation and waits for them.
func (s *pullState) stop() {
	s.cancel()
	s.wg.Wait()
}

// next applies the fetches that ended and builds the next pull: the first
// one starts the task; then each pull reports one failed piece, else the
// last success, else asks for work.
func (s *pullState) next() (api.PullRequest, error) {
	if err := s.drain(); err != nil {
		return api.PullRequest{}, err
	}
	if err := s.ctx.Err(); err != nil {
		return api.PullRequest{}, err
	}
	req := api.PullRequest{TaskID: s.l.TaskID, SrcCID: s.l.CID, Status: types.TaskStatusRunning}
	switch {
	case !s.started:
		req.Status, req.Result = types.TaskStatusStart, types.ResultInvalid
	case len(s.fails) > 0:
		f := s.fails[0]
		s.fails = s.fails[1:]
		req.Result, req.Range, req.DstCID = types.ResultFail, f.rng, f.dstCID
	case s.lastOK != nil:
		// Each success is reported in one pull only (it also went to
		// /peer/piece/suc); later pulls with nothing new to say use
		// the start status, which every supernode treats as "any work?".
		req.Result, req.Range, req.DstCID = types.ResultSemiSuc, s.lastOK.rng, s.lastOK.dstCID
		s.lastOK = nil
	default:
		req.Status, req.Result = types.TaskStatusStart, types.ResultInvalid
	}
	return req, nil
}

// pull sends one request. A supernode that cannot be asked ends the
// attempt with a SupernodeError: another one may do.
func (s *pullState) pull(req api.PullRequest) (*api.Envelope, error) {
	t0 := time.Now()
	env, err := s.l.Supernode.PullPieceTask(s.ctx, s.l.Node, req)
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, s.ctx.Err()
		}
		return nil, &SupernodeError{Node: s.l.Node, Err: fmt.Errorf("pull piece task: %w", err)}
	}
	if s.log.IsLevelEnabled(logrus.DebugLevel) {
		s.log.Debugf("pull status=%d result=%d range=%s -> code %d data %dB in %v, running %d",
			req.Status, req.Result, req.Range, env.Code, len(env.Data), time.Since(t0), len(s.running))
	}
	s.started = true
	return env, nil
}

// launch starts a fetch for each piece of a 601 answer that is neither
// had nor running, and confirms the ones already had. When it starts
// none, it waits a little for a fetch to end before the next pull.
func (s *pullState) launch(env *api.Envelope) error {
	var infos []types.PieceInfo
	if len(env.Data) > 0 && string(env.Data) != "null" {
		if err := json.Unmarshal(env.Data, &infos); err != nil {
			return fmt.Errorf("bad piece task reply: %w", err)
		}
	}
	launched, confirmed := 0, 0
	for _, pi := range infos {
		switch {
		case pi.PieceSize != 0 && pi.PieceSize != s.l.PieceSize:
			// Not this task's piece: given back, or a supernode that
			// counts it running for us would wait for it forever.
			s.giveBack(pi)
		case s.done[pi.PieceNum]:
			// Re-scheduled piece this attempt already wrote.
			s.confirm(pi)
			confirmed++
		case s.running[pi.PieceNum]:
		default:
			ok, err := s.start(pi, s.heldBefore(pi.PieceNum))
			if err != nil {
				return err
			}
			if ok {
				launched++
			}
		}
	}
	if launched > 0 {
		return nil
	}
	// A 601 that starts nothing is no progress: with nothing running
	// here, the supernode may count pieces running for us that it no
	// longer hands out (a Dragonfly 1.x one drops some from its 601 and
	// keeps them so: v1 bug 7).
	if err := s.stuck(); err != nil {
		return err
	}
	if confirmed > 0 {
		// Only pieces we have: give the confirmations a moment to
		// land, then ask for more.
		return s.await(20 * time.Millisecond)
	}
	// At our limit or nothing new: wait for a fetch to end.
	return s.await(time.Second)
}

// giveBack queues pi to be reported failed with no dstCid, once: no
// holder is charged for a piece that was never asked of one (a Dragonfly
// 1.x supernode updates no peer's error counts or blacklist without a
// dstCid, ours takes it as a give-back).
func (s *pullState) giveBack(pi types.PieceInfo) {
	for _, f := range s.fails {
		if f.rng == pi.Range && f.dstCID == "" {
			return
		}
	}
	s.fails = append(s.fails, event{num: pi.PieceNum, rng: pi.Range})
}

// heldBefore reports that piece num was written before this attempt (the
// caller checked it is not this attempt's) and can be checked instead of
// fetched.
func (s *pullState) heldBefore(num int) bool {
	return s.l.Verify != nil && s.l.Have != nil && s.l.Have.Has(num)
}

// start admits piece pi through the gate and spawns its fetch, or its
// check when held from before. It returns false for a piece the gate
// turned away as out of its window: that piece is given back to the
// supernode (giveBack).
func (s *pullState) start(pi types.PieceInfo, held bool) (bool, error) {
	var release func()
	// A held piece takes no window slot: it is not fetched into memory,
	// and a stream's is behind its window.
	if s.l.Gate != nil && !held {
		var err error
		release, err = s.l.Gate.Admit(s.ctx, pi.PieceNum)
		if errors.Is(err, ErrOutOfWindow) {
			s.giveBack(pi)
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	s.running[pi.PieceNum] = true
	s.wg.Add(1)
	s.enqueue(fetchJob{pi: pi, release: release, held: held})
	return true, nil
}

// fetchJob is a piece to fetch and its gate admission, or a held piece to
// check.
type fetchJob struct {
	pi      types.PieceInfo
	release func()
	held    bool
}

// fetchQueue holds the fetches waiting for a worker.
type fetchQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	jobs    []fetchJob
	workers int
}

// enqueue hands a fetch to the workers, starting one if fewer than
// MaxFetch run (any number without a cap). Workers live until the loop
// ends: a piece's check hashes with a large stack frame (BLAKE3's AVX-512
// kernel), and a goroutine per piece paid growing and copying its stack
// for every piece.
//
// After the loop's context ended no job is queued: the workers that saw
// it end are gone, and a job queued behind them would never be done,
// leaving stop waiting forever (and the interrupt swallowed).
func (s *pullState) enqueue(j fetchJob) {
	q := &s.fetches
	q.mu.Lock()
	defer q.mu.Unlock()
	if s.ctx.Err() != nil {
		if j.release != nil {
			j.release()
		}
		s.wg.Done()
		return
	}
	if s.l.MaxFetch <= 0 || q.workers < s.l.MaxFetch {
		q.workers++
		s.wg.Add(1)
		go s.fetchWorker(j)
		return
	}
	q.jobs = append(q.jobs, j)
	q.cond.Signal()
}

// fetchWorker runs its first fetch at once, then queued ones one at a
// time until the loop ends; the fetches still queued then are dropped
// (their admissions given back).
func (s *pullState) fetchWorker(first fetchJob) {
	defer s.wg.Done()
	s.fetch(first)
	q := &s.fetches
	for {
		q.mu.Lock()
		for len(q.jobs) == 0 && s.ctx.Err() == nil {
			q.cond.Wait()
		}
		if s.ctx.Err() != nil {
			jobs := q.jobs
			q.jobs = nil
			// Under q.mu with the check of ctx: enqueue either sees
			// this worker counted or the context ended.
			q.workers--
			q.mu.Unlock()
			for _, j := range jobs {
				if j.release != nil {
					j.release()
				}
				s.wg.Done()
			}
			return
		}
		j := q.jobs[0]
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		s.fetch(j)
	}
}

// fetch fetches one piece (a held one only when its check failed),
// reports it when written or checked, and tells the loop.
func (s *pullState) fetch(j fetchJob) {
	defer s.wg.Done()
	pi := j.pi
	e := event{num: pi.PieceNum, rng: pi.Range, dstCID: pi.CID}
	if j.held {
		e.ok, e.fatal = s.l.Verify(s.ctx, pi)
		e.held = e.ok
	}
	if !e.ok && e.fatal == nil {
		e.ok, e.fatal = s.l.Fetch(s.ctx, pi, j.release)
	}
	if e.ok {
		// Before the loop may name the piece in a pull (503): the
		// supernode counts a 503 as "had" only after /peer/piece/suc.
		if e.held && s.l.HeldUnshared {
			pi.NoShare = true
		}
		s.reportSuccess(pi)
		if e.held {
			s.log.Debugf("piece %d held from before: checked against %s's digest and confirmed", pi.PieceNum, s.l.Node)
		}
	}
	// The buffered send comes first: after a finish (600) cancels ctx, a
	// written piece must still be counted, not dropped by a select that
	// picked ctx.Done at random.
	select {
	case s.events <- e:
	default:
		select {
		case s.events <- e:
		case <-s.ctx.Done():
		}
	}
}

// reportSuccess sends /peer/piece/suc, retrying a few times: until the
// supernode has it, no other peer is sent to us for this piece.
func (s *pullState) reportSuccess(pi types.PieceInfo) {
	for i := 0; i < 3; i++ {
		err := s.l.Supernode.ReportPieceSuccess(s.ctx, s.l.Node, s.l.TaskID, s.l.CID, pi.CID, pi.Range, !pi.NoShare)
		if err == nil || s.ctx.Err() != nil {
			return
		}
		s.log.Debugf("report piece %d success: %v", pi.PieceNum, err)
		if sleep(s.ctx, time.Duration(50+rand.IntN(500))*time.Millisecond) != nil {
			return
		}
	}
}

// confirm reports a piece already had, in the background.
func (s *pullState) confirm(pi types.PieceInfo) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.reportSuccess(pi) }()
}

// backOff waits after 602 (nothing to fetch yet) or 603 (at this client's
// limit): from 20 ms doubling to 640 ms, plus as much jitter, cut short by
// a fetch ending.
//
// A 602 is the supernode saying pieces are coming: its CDN may be filling
// from a slow origin (a 15 MiB piece takes two minutes under 128 KiB/s),
// which is no reason to leave it; its own stall watchdog fails a fill that
// stops, and --timeout bounds the download. So a 602 counts as progress.
// A 603 with nothing running here does not (stuck).
func (s *pullState) backOff(code int) error {
	if code == types.CodePeerWait {
		s.lastProgress = time.Now()
	} else if err := s.stuck(); err != nil {
		return err
	}
	d := backOffDelay(s.wait, rand.IntN)
	s.wait++
	return s.await(d)
}

// stuck ends the attempt when the supernode has answered without progress
// (no piece arriving, no 602) for longer than the limit while nothing runs
// here: it counts pieces running for this client that it does not hand
// out, or hands out only pieces that are not this task's. Another
// supernode may do (SupernodeError).
func (s *pullState) stuck() error {
	if len(s.running) > 0 || time.Since(s.lastProgress) <= s.limit {
		return nil
	}
	return &SupernodeError{Node: s.l.Node, Err: fmt.Errorf("%w (%v without a piece or a 602)", errNoProgress, s.limit)}
}

// backOffDelay is the wait'th back-off (from 0): 20 ms doubling to 640 ms,
// plus jitter(n) ms, jitter returning [0, n) as rand.IntN does, so
// clients told to wait at once do not all pull again at once.
func backOffDelay(wait int, jitter func(int) int) time.Duration {
	lo := 20 << min(wait, 5)
	return time.Duration(lo+jitter(lo)) * time.Millisecond
}

// finish ends the attempt on 600: the fetches still running are cancelled
// and waited for.
func (s *pullState) finish(env *api.Envelope) (*Result, error) {
	if len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, &s.res.Finish); err != nil {
			return nil, fmt.Errorf("bad finish reply: %w", err)
		}
	}
	s.stop()
	// Pieces whose write raced the finish still count.
	if err := s.drain(); err != nil {
		return nil, err
	}
	res := s.res
	return &res, nil
}

// codeError is the end of an attempt by a /peer/task code that is not
// part of the pull loop's conversation.
func (s *pullState) codeError(env *api.Envelope) error {
	node := s.l.Node
	switch env.Code {
	case types.CodeSourceError:
		return fmt.Errorf("supernode %s: source error: %s", node, env.Msg)
	case types.CodeTargetNotFound:
		return fmt.Errorf("supernode %s: /peer/task code %d (%s): %w", node, env.Code, env.Msg, ErrTaskGone)
	}
	return &SupernodeError{Node: node, Err: fmt.Errorf("/peer/task code %d: %s", env.Code, env.Msg)}
}

// handle applies the end of one fetch.
func (s *pullState) handle(e event) error {
	delete(s.running, e.num)
	if e.fatal != nil {
		return e.fatal
	}
	if !e.ok {
		s.fails = append(s.fails, e)
		return nil
	}
	if !s.done[e.num] {
		s.done[e.num] = true
		s.res.Pieces++
		if !e.held && !strings.HasPrefix(e.dstCID, types.SuperNodeCIDPrefix) {
			s.res.FromPeers++
		}
	}
	s.lastOK = &e
	s.lastProgress = time.Now()
	s.wait = 0
	return nil
}

// drain applies every event already queued without blocking.
func (s *pullState) drain() error {
	for {
		select {
		case e := <-s.events:
			if err := s.handle(e); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// await blocks for the next event or until d elapses.
func (s *pullState) await(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return s.ctx.Err()
	case e := <-s.events:
		if err := s.handle(e); err != nil {
			return err
		}
		return s.drain()
	case <-t.C:
		return nil
	}
}

// sleep waits for d or until ctx ends, whose error it returns.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
