package downloader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
)

const testPieceSize = 10

// info is piece n of the test task, held by peer-a.
func info(n int) types.PieceInfo {
	return types.PieceInfo{PieceNum: n, Range: fmt.Sprintf("%d-%d", n*testPieceSize, n*testPieceSize+testPieceSize-1),
		PieceSize: testPieceSize, CID: "peer-a", PeerIP: "10.0.0.1", PeerPort: 15001, Path: "/peer/file/x"}
}

// answer is one scripted /peer/task answer.
type answer struct {
	code   int
	pieces []types.PieceInfo
	data   string // raw data instead of pieces
	err    error  // transport error instead of an answer
	// idle holds the answer back (602) until every piece handed out was
	// reported, as a supernode re-offering a piece it thinks is free.
	idle bool
}

// fakeNode is a supernode behind a generated MockSupernode: it answers the
// script first, then 602 until every piece handed out is reported (by
// /peer/piece/suc or as failed) and 600 after. It records the conversation.
type fakeNode struct {
	t        *testing.T
	mu       sync.Mutex
	script   []answer
	handed   map[string]bool // ranges handed out and not reported yet
	reported map[string]int  // range -> /peer/piece/suc calls
	unshared map[string]bool // ranges reported with share=0
	pulls    []api.PullRequest
	at       []time.Time // when each pull came
	finished chan struct{}
}

func newFakeNode(t *testing.T, script ...answer) (*MockSupernode, *fakeNode) {
	f := &fakeNode{t: t, script: script, handed: map[string]bool{}, reported: map[string]int{}, unshared: map[string]bool{},
		finished: make(chan struct{})}
	m := NewMockSupernode(gomock.NewController(t))
	m.EXPECT().PullPieceTask(gomock.Any(), "node", gomock.Any()).DoAndReturn(f.pull).AnyTimes()
	m.EXPECT().ReportPieceSuccess(gomock.Any(), "node", "task", "me", gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(f.suc).AnyTimes()
	return m, f
}

func (f *fakeNode) pull(_ context.Context, _ string, r api.PullRequest) (*api.Envelope, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls = append(f.pulls, r)
	f.at = append(f.at, time.Now())
	if len(f.pulls) > 200 {
		f.t.Error("the loop keeps pulling")
		return nil, errors.New("too many pulls")
	}
	if r.TaskID != "task" || r.SrcCID != "me" {
		f.t.Errorf("pull for %s/%s", r.TaskID, r.SrcCID)
	}
	switch r.Result {
	case types.ResultSemiSuc:
		if f.reported[r.Range] == 0 {
			f.t.Errorf("pull names %s as had (503) before /peer/piece/suc", r.Range)
		}
	case types.ResultFail:
		delete(f.handed, r.Range)
	}
	a := answer{code: types.CodePeerWait}
	switch {
	case len(f.script) > 0 && (!f.script[0].idle || len(f.handed) == 0):
		a, f.script = f.script[0], f.script[1:]
	case len(f.script) == 0 && len(f.handed) == 0:
		a = answer{code: types.CodePeerFinish}
	}
	if a.err != nil {
		return nil, a.err
	}
	env := &api.Envelope{Code: a.code, Data: json.RawMessage(a.data)}
	if a.pieces != nil {
		env.Data, _ = json.Marshal(a.pieces)
		for _, pi := range a.pieces {
			if pi.PieceSize == testPieceSize {
				f.handed[pi.Range] = true
			}
		}
	}
	if a.code == types.CodePeerFinish {
		close(f.finished)
	}
	return env, nil
}

func (f *fakeNode) suc(ctx context.Context, _, _, _, dstCID, rng string, share bool) error {
	if dstCID == "" {
		f.t.Errorf("/peer/piece/suc for %s without a holder", rng)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reported[rng]++
	if !share {
		f.unshared[rng] = true
	}
	delete(f.handed, rng)
	return ctx.Err()
}

// results are the result codes the pulls after the first one sent.
func (f *fakeNode) results() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, r := range f.pulls[1:] {
		out = append(out, r.Result)
	}
	return out
}

// holders are fake piece holders: a FetchFunc that writes every piece at
// once unless told otherwise.
type holders struct {
	mu         sync.Mutex
	fetched    []int
	running    int
	maxRunning int
	// do, when set for a piece, is its fetch.
	do map[int]func(ctx context.Context) (bool, error)
}

func (h *holders) fetch(ctx context.Context, pi types.PieceInfo, _ func()) (bool, error) {
	h.mu.Lock()
	h.fetched = append(h.fetched, pi.PieceNum)
	h.running++
	h.maxRunning = max(h.maxRunning, h.running)
	do := h.do[pi.PieceNum]
	h.mu.Unlock()
	defer func() { h.mu.Lock(); h.running--; h.mu.Unlock() }()
	if do != nil {
		return do(ctx)
	}
	return sleep(ctx, time.Millisecond) == nil, nil
}

func (h *holders) got() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := slices.Clone(h.fetched)
	slices.Sort(s)
	return s
}

func loopFor(sn Supernode, h *holders) *PullLoop {
	return &PullLoop{Supernode: sn, Task: Task{Node: "node", TaskID: "task", CID: "me", PieceSize: testPieceSize}, Fetch: h.fetch}
}

var errTransport = errors.New("connection refused")

// TestPullLoopCodes runs the loop over each /peer/task code of the v1
// protocol.
func TestPullLoopCodes(t *testing.T) {
	fromSupernode := info(1)
	fromSupernode.CID = types.SuperNodeCIDPrefix + "x"
	for _, tc := range []struct {
		name    string
		script  []answer
		fetched []int
		// pieces and fromPeers are the Result's, when err is nil.
		pieces, fromPeers int
		finish            types.FinishData
		err               func(error) bool
		// minGap is the least time between the first two pulls.
		minGap time.Duration
	}{
		{name: "601 with pieces", script: []answer{{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0), fromSupernode}}},
			fetched: []int{0, 1}, pieces: 2, fromPeers: 1},
		{name: "200 as 601", script: []answer{{code: types.CodeSuccess, pieces: []types.PieceInfo{info(0)}}},
			fetched: []int{0}, pieces: 1, fromPeers: 1},
		{name: "601 empty waits for a fetch", script: []answer{{code: types.CodePeerContinue, data: "null"}}, minGap: time.Second},
		{name: "600 with finish data", script: []answer{{code: types.CodePeerFinish, data: `{"md5":"abc","fileLength":42}`}},
			finish: types.FinishData{Md5: "abc", FileLength: 42}},
		{name: "602 backs off", script: []answer{{code: types.CodePeerWait}, {code: types.CodePeerWait}}, minGap: 20 * time.Millisecond},
		{name: "603 backs off", script: []answer{{code: types.CodePeerLimited}}, minGap: 20 * time.Millisecond},
		{name: "605 migrates", script: []answer{{code: types.CodeUnknownError}}, err: isSupernodeError},
		{name: "610 source error", script: []answer{{code: types.CodeSourceError}}, err: func(err error) bool {
			return !isSupernodeError(err) && !errors.Is(err, ErrTaskGone) && strings.Contains(err.Error(), "source error")
		}},
		{name: "502 unknown client registers again", script: []answer{{code: types.CodeTargetNotFound}}, err: func(err error) bool {
			return errors.Is(err, ErrTaskGone) && !isSupernodeError(err)
		}},
		{name: "transport error migrates", script: []answer{{err: errTransport}}, err: func(err error) bool {
			return isSupernodeError(err) && errors.Is(err, errTransport)
		}},
		{name: "bad pieces end the attempt", script: []answer{{code: types.CodePeerContinue, data: "{"}}, err: func(err error) bool {
			return err != nil && !isSupernodeError(err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sn, f := newFakeNode(t, tc.script...)
			h := &holders{}
			res, err := loopFor(sn, h).Run(context.Background())
			if tc.err != nil {
				if err == nil || !tc.err(err) {
					t.Fatalf("err = %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if res.Pieces != tc.pieces || res.FromPeers != tc.fromPeers || res.Finish != tc.finish {
				t.Errorf("result %+v", res)
			}
			if got := h.got(); !slices.Equal(got, tc.fetched) {
				t.Errorf("fetched %v, want %v", got, tc.fetched)
			}
			if first := f.pulls[0]; first.Status != types.TaskStatusStart || first.Result != types.ResultInvalid {
				t.Errorf("first pull %+v", first)
			}
			if tc.minGap > 0 && f.at[1].Sub(f.at[0]) < tc.minGap {
				t.Errorf("second pull %v after the first, want >= %v", f.at[1].Sub(f.at[0]), tc.minGap)
			}
		})
	}
}

func isSupernodeError(err error) bool {
	var se *SupernodeError
	return errors.As(err, &se) && se.Node == "node"
}

// Every success is reported with /peer/piece/suc before a pull names it
// (the fake checks), and each in one pull only.
func TestPullLoopReportsEachSuccessOnce(t *testing.T) {
	sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0), info(1), info(2)}})
	h := &holders{}
	if _, err := loopFor(sn, h).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	named := map[string]int{}
	for _, r := range f.pulls {
		if r.Result == types.ResultSemiSuc {
			named[r.Range]++
			if r.Status != types.TaskStatusRunning || r.DstCID != "peer-a" {
				t.Errorf("503 pull %+v", r)
			}
		}
	}
	for rng, n := range named {
		if n != 1 || f.reported[rng] != 1 {
			t.Errorf("%s named %d times, reported %d", rng, n, f.reported[rng])
		}
	}
	if len(f.reported) != 3 {
		t.Errorf("reported %v", f.reported)
	}
}

// A piece offered noShare is reported with share=0, the others as shared.
func TestPullLoopReportsNoShareUnshared(t *testing.T) {
	p1 := info(1)
	p1.NoShare = true
	sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0), p1}})
	if _, err := loopFor(sn, &holders{}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.reported) != 2 || len(f.unshared) != 1 || !f.unshared[p1.Range] {
		t.Fatalf("reported %v, unshared %v; want both reported, only %s unshared", f.reported, f.unshared, p1.Range)
	}
}

// Back-off doubles while nothing arrives: 20, 40, 80 ms at least.
func TestPullLoopBackOffGrows(t *testing.T) {
	wait := answer{code: types.CodePeerWait}
	sn, f := newFakeNode(t, wait, wait, wait)
	if _, err := loopFor(sn, &holders{}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{20, 40, 80} {
		if gap := f.at[i+1].Sub(f.at[i]); gap < want*time.Millisecond {
			t.Errorf("back-off %d: %v, want >= %v ms", i, gap, want)
		}
	}
	for _, r := range f.results() {
		if r != types.ResultInvalid {
			t.Errorf("a pull with nothing to say sent result %d", r)
		}
	}
}

// A piece the writer already has (written before a migration) is checked
// and then confirmed, not fetched again; one this attempt already wrote
// is confirmed at once.
func TestPullLoopConfirmsPiecesHad(t *testing.T) {
	sn, f := newFakeNode(t,
		answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0), info(1)}},
		answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(1)}, idle: true})
	have := NewMockHasPieces(gomock.NewController(t))
	have.EXPECT().Has(gomock.Any()).DoAndReturn(func(n int) bool { return n == 0 }).AnyTimes()
	h := &holders{}
	l := loopFor(sn, h)
	l.Have = have
	var checked []int
	l.Verify = func(_ context.Context, pi types.PieceInfo) (bool, error) {
		checked = append(checked, pi.PieceNum)
		return true, nil
	}
	res, err := l.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := h.got(); !slices.Equal(got, []int{1}) || res.Pieces != 2 || res.FromPeers != 1 {
		t.Errorf("fetched %v, %d pieces, %d from peers", got, res.Pieces, res.FromPeers)
	}
	if !slices.Equal(checked, []int{0}) {
		t.Errorf("checked %v, want [0]", checked)
	}
	if f.reported[info(0).Range] != 1 || f.reported[info(1).Range] != 2 {
		t.Errorf("reports %v", f.reported)
	}
}

// A held piece is confirmed with share=0 when the writer cannot serve it
// (HeldUnshared: a stream's written pieces), else as shared (a file's);
// a piece fetched is shared either way.
func TestPullLoopReportsHeldUnshared(t *testing.T) {
	for _, unshared := range []bool{false, true} {
		sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0), info(1)}})
		have := NewMockHasPieces(gomock.NewController(t))
		have.EXPECT().Has(gomock.Any()).DoAndReturn(func(n int) bool { return n == 0 }).AnyTimes()
		l := loopFor(sn, &holders{})
		l.Have, l.HeldUnshared = have, unshared
		l.Verify = func(context.Context, types.PieceInfo) (bool, error) { return true, nil }
		if _, err := l.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if f.reported[info(0).Range] != 1 || f.unshared[info(0).Range] != unshared || f.unshared[info(1).Range] {
			t.Errorf("HeldUnshared %v: reports %v, unshared %v", unshared, f.reported, f.unshared)
		}
	}
}

// A held piece is never confirmed unchecked: one whose check fails, or
// held with no way to check it, is fetched again; a check that errs ends
// the attempt without confirming anything.
func TestPullLoopChecksHeldPieces(t *testing.T) {
	errStream := errors.New("stream cannot go on")
	for _, tc := range []struct {
		name   string
		verify VerifyFunc
		err    error
	}{
		{name: "mismatch", verify: func(context.Context, types.PieceInfo) (bool, error) { return false, nil }},
		{name: "no verifier"},
		{name: "fatal", verify: func(context.Context, types.PieceInfo) (bool, error) { return false, errStream }, err: errStream},
	} {
		sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0)}})
		have := NewMockHasPieces(gomock.NewController(t))
		have.EXPECT().Has(gomock.Any()).Return(true).AnyTimes()
		h := &holders{}
		l := loopFor(sn, h)
		l.Have, l.Verify = have, tc.verify
		res, err := l.Run(context.Background())
		if tc.err != nil {
			if !errors.Is(err, tc.err) || f.reported[info(0).Range] != 0 {
				t.Errorf("%s: %v, reports %v", tc.name, err, f.reported)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := h.got(); !slices.Equal(got, []int{0}) || res.Pieces != 1 || f.reported[info(0).Range] != 1 {
			t.Errorf("%s: fetched %v, %d pieces, reports %v", tc.name, got, res.Pieces, f.reported)
		}
	}
}

// A piece of another size is not this task's: neither fetched nor
// confirmed.
func TestPullLoopIgnoresOtherSizes(t *testing.T) {
	other := info(0)
	other.PieceSize = 2 * testPieceSize
	sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{other, info(1)}})
	h := &holders{}
	if _, err := loopFor(sn, h).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.got(); !slices.Equal(got, []int{1}) || f.reported[other.Range] != 0 {
		t.Errorf("fetched %v, reports %v", got, f.reported)
	}
}

// A failed piece goes back to the supernode as failed (500) with its
// holder, so it is scheduled elsewhere; a fatal one ends the attempt.
func TestPullLoopFetchFailures(t *testing.T) {
	sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0)}})
	h := &holders{do: map[int]func(context.Context) (bool, error){0: func(context.Context) (bool, error) { return false, nil }}}
	res, err := loopFor(sn, h).Run(context.Background())
	if err != nil || res.Pieces != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	if !slices.Contains(f.results(), types.ResultFail) {
		t.Fatalf("no failure reported: %+v", f.pulls)
	}
	for _, r := range f.pulls {
		if r.Result == types.ResultFail && (r.Range != info(0).Range || r.DstCID != "peer-a" || r.Status != types.TaskStatusRunning) {
			t.Errorf("failure pull %+v", r)
		}
	}

	errDisk := errors.New("disk full")
	sn, _ = newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0)}})
	h = &holders{do: map[int]func(context.Context) (bool, error){0: func(context.Context) (bool, error) { return false, errDisk }}}
	if _, err := loopFor(sn, h).Run(context.Background()); !errors.Is(err, errDisk) {
		t.Fatalf("fatal fetch: %v", err)
	}
}

// The stream window: a piece the gate turns away is given back as failed,
// naming no holder (it was never fetched from one: a holder named would
// be charged for it), and not fetched; an admitted one is fetched.
func TestPullLoopGate(t *testing.T) {
	sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0), info(5)}})
	gate := NewMockGate(gomock.NewController(t))
	gate.EXPECT().Admit(gomock.Any(), 0).Return(func() {}, nil)
	gate.EXPECT().Admit(gomock.Any(), 5).Return(nil, ErrOutOfWindow)
	h := &holders{}
	l := loopFor(sn, h)
	l.Gate = gate
	if _, err := l.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.got(); !slices.Equal(got, []int{0}) {
		t.Errorf("fetched %v", got)
	}
	var failed []string
	for _, r := range f.pulls {
		if r.Result == types.ResultFail {
			failed = append(failed, r.Range)
			if r.DstCID != "" {
				t.Errorf("give-back of %s names holder %q", r.Range, r.DstCID)
			}
		}
	}
	if !slices.Equal(failed, []string{info(5).Range}) {
		t.Errorf("failed %v", failed)
	}
}

// MaxFetch bounds the fetches running at once.
func TestPullLoopMaxFetch(t *testing.T) {
	var ps []types.PieceInfo
	for i := range 6 {
		ps = append(ps, info(i))
	}
	sn, _ := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: ps})
	slow := func(ctx context.Context) (bool, error) { return sleep(ctx, 20*time.Millisecond) == nil, nil }
	h := &holders{do: map[int]func(context.Context) (bool, error){}}
	for i := range 6 {
		h.do[i] = slow
	}
	l := loopFor(sn, h)
	l.MaxFetch = 2
	res, err := l.Run(context.Background())
	if err != nil || res.Pieces != 6 {
		t.Fatalf("%+v, %v", res, err)
	}
	if h.maxRunning > 2 {
		t.Errorf("%d fetches at once, cap 2", h.maxRunning)
	}
}

// A piece written while the finish (600) arrives still counts, and Run
// returns only after every fetch ended, even when the attempt fails.
func TestPullLoopWaitsForFetches(t *testing.T) {
	sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0)}},
		answer{code: types.CodePeerFinish})
	h := &holders{do: map[int]func(context.Context) (bool, error){0: func(context.Context) (bool, error) {
		<-f.finished
		return true, nil
	}}}
	res, err := loopFor(sn, h).Run(context.Background())
	if err != nil || res.Pieces != 1 {
		t.Fatalf("%+v, %v", res, err)
	}

	sn, _ = newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0)}},
		answer{code: types.CodeUnknownError})
	var ended sync.WaitGroup
	ended.Add(1)
	done := false
	h = &holders{do: map[int]func(context.Context) (bool, error){0: func(ctx context.Context) (bool, error) {
		defer ended.Done()
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond)
		done = true
		return false, nil
	}}}
	if _, err := loopFor(sn, h).Run(context.Background()); !isSupernodeError(err) {
		t.Fatalf("err = %v", err)
	}
	if !done {
		t.Fatal("Run returned before its fetch ended")
	}
	ended.Wait()
}

// An interrupt ends the loop with the context's error, not a supernode
// error (which would migrate).
func TestPullLoopCancelled(t *testing.T) {
	sn, _ := newFakeNode(t, answer{code: types.CodePeerWait}, answer{code: types.CodePeerWait}, answer{code: types.CodePeerWait},
		answer{code: types.CodePeerWait}, answer{code: types.CodePeerWait}, answer{code: types.CodePeerWait})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := loopFor(sn, &holders{}).Run(ctx); !errors.Is(err, context.DeadlineExceeded) || isSupernodeError(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestSleepHeedsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t0 := time.Now()
	if err := sleep(ctx, time.Minute); !errors.Is(err, context.Canceled) || time.Since(t0) > time.Second {
		t.Fatalf("sleep: %v after %v", err, time.Since(t0))
	}
}
