package downloader

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
)

// testNoProgress is the no-progress limit of these tests.
const testNoProgress = 100 * time.Millisecond

// A supernode answering 602 for longer than the no-progress limit (its
// CDN filling from a slow origin) is waited for: the download goes on
// when the pieces come.
func TestPullLoopWaitsOutSlowFill(t *testing.T) {
	wait := answer{code: types.CodePeerWait}
	// Back-offs of 20, 40, 80 and 160 ms at least: 300 ms of 602s.
	sn, f := newFakeNode(t, wait, wait, wait, wait,
		answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{info(0)}})
	l := loopFor(sn, &holders{})
	l.NoProgressLimit = testNoProgress
	res, err := l.Run(context.Background())
	if err != nil {
		t.Fatalf("run after %v of 602s: %v", f.at[len(f.at)-1].Sub(f.at[0]), err)
	}
	if res.Pieces != 1 {
		t.Errorf("%d pieces, want 1", res.Pieces)
	}
	if waited := f.at[4].Sub(f.at[0]); waited <= testNoProgress {
		t.Errorf("602s for %v only, not past the limit %v", waited, testNoProgress)
	}
}

// Answers that make no progress for another reason than 602 (603, a 601
// that starts nothing) with nothing running end the attempt past the
// limit as a supernode failure, so that dfget migrates.
func TestPullLoopNoProgressMigrates(t *testing.T) {
	other := info(0)
	other.PieceSize = 2 * testPieceSize
	for _, tc := range []struct {
		name string
		a    answer
	}{
		{name: "603", a: answer{code: types.CodePeerLimited}},
		{name: "empty 601", a: answer{code: types.CodePeerContinue, data: "[]"}},
		{name: "601 of another piece size", a: answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{other}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := make([]answer, 8)
			for i := range script {
				script[i] = tc.a
			}
			sn, f := newFakeNode(t, script...)
			l := loopFor(sn, &holders{})
			l.NoProgressLimit = testNoProgress
			_, err := l.Run(context.Background())
			if !isSupernodeError(err) || !errors.Is(err, errNoProgress) {
				t.Fatalf("err = %v after %d pulls, want a supernode error for no progress", err, len(f.pulls))
			}
		})
	}
}

// A piece of another piece size is given back as failed naming no holder,
// so that a supernode counting it running for this client frees it.
func TestPullLoopGivesBackOtherSizes(t *testing.T) {
	other := info(0)
	other.PieceSize = 2 * testPieceSize
	sn, f := newFakeNode(t, answer{code: types.CodePeerContinue, pieces: []types.PieceInfo{other, info(1)}})
	if _, err := loopFor(sn, &holders{}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var given []api.PullRequest
	for _, r := range f.pulls {
		if r.Result == types.ResultFail {
			given = append(given, r)
		}
	}
	if len(given) != 1 || given[0].Range != other.Range || given[0].DstCID != "" {
		t.Fatalf("failed pulls %+v, want one for %s without a holder", given, other.Range)
	}
}
