package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// swarmCase is one integrity swarm: the supernode's CDN pattern, the kind
// of misbehaving peer, and how the honest dfgets run.
type swarmCase struct {
	cdnPattern string // supernode --cdn-pattern: local or source
	peer       string // liar, liar-zeros, semi (zeros before written), semi-404
	dfgetCDN   bool   // honest dfgets run --pattern cdn (no peer server)
	notbs      bool   // honest dfgets run --notbs
}

func (c swarmCase) name() string {
	pat, bs := "p2p", "bs"
	if c.dfgetCDN {
		pat = "cdn"
	}
	if c.notbs {
		bs = "notbs"
	}
	return strings.Join([]string{c.cdnPattern, c.peer, pat, bs}, "/")
}

// swarmCases is every pattern with the lying and the semi-success peer,
// plus their zero-filled and 404 forms for the default dfget pattern.
func swarmCases() []swarmCase {
	var cs []swarmCase
	for _, cdn := range []string{"local", "source"} {
		for _, peer := range []string{"liar", "semi"} {
			for _, dfgetCDN := range []bool{false, true} {
				for _, notbs := range []bool{true, false} {
					cs = append(cs, swarmCase{cdnPattern: cdn, peer: peer, dfgetCDN: dfgetCDN, notbs: notbs})
				}
			}
		}
		cs = append(cs, swarmCase{cdnPattern: cdn, peer: "liar-zeros", notbs: true},
			swarmCase{cdnPattern: cdn, peer: "semi-404", notbs: true})
	}
	return cs
}

const (
	swarmHonest    = 3
	swarmFileSize  = 24 << 20 // 6 pieces of 4 MiB
	swarmBadIP     = "127.0.0.66"
	semiWriteDelay = 2 * time.Second
	// semiReportsFirst is how many pieces the semi-success peer reports
	// with 503 before the honest dfgets start.
	semiReportsFirst = 2
)

// Honest real dfgets, started at once, share a swarm with one misbehaving
// peer that registered through the open API: a liar that claims every
// piece with /peer/piece/suc and serves well-wrapped pieces of the right
// length with wrong (random or zero) bytes, or a Dragonfly 1.x-style peer
// that reports a piece with /peer/task result=503 while its file still
// lacks it (its server sends zeros, or 404) and calls /peer/piece/suc only
// writeDelay later. In every pattern (supernode --cdn-pattern local and
// source, dfget --pattern p2p and cdn, with and without --notbs) each
// honest dfget either exits 0 with the exact file or exits non-zero with
// no file at -o; a wrong file with exit 0 is the failure this guards
// against. The bad peer must have been asked for pieces (else nothing was
// tested), and every wrong piece it served must show up as a failed piece
// at the supernode.
func TestIntegritySwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts supernodes and dfget swarms")
	}
	data := randomData(swarmFileSize, 1111)
	o := newOrigin(t)
	for i, c := range swarmCases() {
		t.Run(c.name(), func(t *testing.T) {
			rawURL := o.add(fmt.Sprintf("/swarm-%d.bin", i), data)
			runIntegritySwarm(t, c, rawURL, data)
		})
	}
}

func runIntegritySwarm(t *testing.T, c swarmCase, rawURL string, data []byte) {
	sn := startSupernode(t, t.TempDir(), "--cdn-pattern", c.cdnPattern)
	var bad *fakePeer
	var semi *semiPeer
	switch c.peer {
	case "liar", "liar-zeros":
		bad = startLiar(t, sn, swarmBadIP, rawURL, c.peer == "liar-zeros")
	case "semi", "semi-404":
		semi = startSemiPeer(t, sn, swarmBadIP, rawURL, semiWriteDelay, c.peer == "semi-404")
		bad = semi.fakePeer
		// The honest peers come while the first pieces are reported but
		// not yet written.
		Eventually(t, 10*time.Second, "semi-success reports", func() bool {
			n, _, err := semi.state()
			return n >= semiReportsFirst || err != nil
		})
		if n, _, err := semi.state(); err != nil {
			t.Fatalf("semi-success peer: its pull loop failed after %d reports: %v", n, err)
		}
	}
	start := time.Now()
	peers, runs, outs := runHonestSwarm(t, sn, c, rawURL)
	t.Logf("%d honest dfgets done in %s", swarmHonest, time.Since(start).Round(time.Millisecond))
	contentSize := int64(bad.reg.PieceSize)
	if !bad.raw() {
		contentSize = piece.ContentSize(bad.reg.PieceSize)
	}
	for i, r := range runs {
		failed, reported := failuresFrom(t, peers[i], swarmBadIP)
		t.Logf("dfget %d: exit %d in %s; %d failed fetches from %s, %d pieces reported; %s", i, r.code,
			r.duration.Round(time.Millisecond), failed, swarmBadIP, reported, lastLine(r.stdout+r.stderr))
		checkSwarmOutput(t, i, r, outs[i], data, contentSize)
	}
	if semi != nil {
		checkSemiPeer(t, semi, start)
	} else {
		checkLiarAsked(t, sn, bad, c.cdnPattern == "source")
	}
	checkFailuresReported(t, sn, bad)
}

// runHonestSwarm starts swarmHonest dfgets at once and waits for all.
func runHonestSwarm(t *testing.T, sn *supernode, c swarmCase, rawURL string) ([]*dfgetPeer, []dfgetRun, []string) {
	dir := t.TempDir()
	peers := make([]*dfgetPeer, swarmHonest)
	runs := make([]dfgetRun, swarmHonest)
	outs := make([]string, swarmHonest)
	var wg sync.WaitGroup
	for i := range peers {
		peers[i] = newDfgetPeer(t, "127.0.0."+strconv.Itoa(10+i))
		outs[i] = filepath.Join(dir, "out-"+strconv.Itoa(i))
		args := []string{"-u", rawURL, "-o", outs[i]}
		if c.notbs {
			args = append(args, "--notbs")
		}
		if c.dfgetCDN {
			args = append(args, "--pattern", "cdn")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = peers[i].run(sn, args...)
		}()
	}
	wg.Wait()
	return peers, runs, outs
}

// checkSwarmOutput is the guarantee: exit 0 and the exact bytes, or a
// non-zero exit and nothing at the output path.
func checkSwarmOutput(t *testing.T, i int, r dfgetRun, path string, want []byte, contentSize int64) {
	t.Helper()
	got, err := os.ReadFile(path)
	switch {
	case r.code != 0 && os.IsNotExist(err):
	case r.code != 0:
		t.Errorf("dfget %d: exit %d, yet %s exists (%v)", i, r.code, path, err)
	case err != nil:
		t.Errorf("dfget %d: exit 0 without a readable output: %v", i, err)
	case !bytes.Equal(got, want):
		bad, zero := diffPieces(got, want, contentSize)
		t.Errorf("dfget %d: exit 0 with a WRONG file: %d of %d bytes, pieces differing %v (all-zero %v)",
			i, len(got), len(want), bad, zero)
	}
}

// diffPieces lists the pieces (by content size) where got and want differ,
// and which of those are all zeros in got.
func diffPieces(got, want []byte, contentSize int64) (bad, zero []int) {
	for num := 0; int64(num)*contentSize < int64(max(len(got), len(want))); num++ {
		s := int64(num) * contentSize
		g, w := window(got, s, contentSize), window(want, s, contentSize)
		if bytes.Equal(g, w) {
			continue
		}
		bad = append(bad, num)
		if len(g) > 0 && bytes.Count(g, []byte{0}) == len(g) {
			zero = append(zero, num)
		}
	}
	return bad, zero
}

func window(b []byte, start, n int64) []byte {
	if start >= int64(len(b)) {
		return nil
	}
	return b[start:min(start+n, int64(len(b)))]
}

// checkLiarAsked fails the test when the liar was never asked for a
// piece: then the swarm proved nothing. The one exception is a source
// pattern supernode that schedules no piece to any peer (clients fetch
// every piece from the source, a valid way to trust no peer there).
func checkLiarAsked(t *testing.T, sn *supernode, liar *fakePeer, sourcePattern bool) {
	t.Helper()
	if liar.hits.Load() > 0 {
		return
	}
	scheduled := metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="peer"}`)
	if sourcePattern && scheduled == 0 {
		t.Logf("the liar was never asked: the source-pattern supernode scheduled no piece to any peer")
		return
	}
	t.Errorf("the liar was never asked for a piece (%v pieces scheduled to other peers): the swarm tested nothing", scheduled)
}

// checkSemiPeer holds the supernode to the Dragonfly 1.x rule: a peer
// becomes a holder of a piece on /peer/piece/suc, not on a 503 report, so
// no client may be sent to the semi-success peer for a piece it has not
// written yet. The honest dfgets must have started while reported pieces
// were still unwritten, else the case tested nothing.
func checkSemiPeer(t *testing.T, semi *semiPeer, honestStart time.Time) {
	t.Helper()
	n, firstSuc, err := semi.state()
	written := "none written by the time the honest dfgets ended"
	if !firstSuc.IsZero() {
		written = "first written " + firstSuc.Sub(honestStart).Round(time.Millisecond).String() + " after the honest dfgets started"
	}
	t.Logf("semi-success peer: %d pieces reported with 503, %s (loop error: %v)", n, written, err)
	// A loop that failed or reported little leaves the rule untested: no
	// client could have been sent to pieces that were never reported.
	if err != nil {
		t.Errorf("the semi-success peer's pull loop failed: %v", err)
	}
	if n < semiReportsFirst {
		t.Errorf("the semi-success peer reported %d pieces with 503, want at least %d: the case tested nothing", n, semiReportsFirst)
	}
	if !firstSuc.IsZero() && firstSuc.Before(honestStart) {
		t.Errorf("the semi-success peer wrote its first piece before the honest dfgets started: the case tested nothing")
	}
	if early := semi.early.Load(); early > 0 {
		t.Errorf("clients were sent to the semi-success peer %d times for pieces it had reported with result=503 but not yet with /peer/piece/suc", early)
	}
}

// checkFailuresReported fails the test when the bad peer served pieces it
// did not have and no client reported a failed piece to the supernode.
func checkFailuresReported(t *testing.T, sn *supernode, bad *fakePeer) {
	t.Helper()
	hits, early := bad.hits.Load(), bad.early.Load()
	failed := metricValue(t, sn, `dragonfly_supernode_pieces_failed_total{holder="peer"}`)
	scheduled := metricValue(t, sn, `dragonfly_supernode_pieces_scheduled_total{holder="peer"}`)
	t.Logf("bad peer %s: %d piece requests, %d of them for pieces it did not have; supernode: %v pieces scheduled to peers, %v failed at peers",
		bad.ip, hits, early, scheduled, failed)
	if early > 0 && failed == 0 {
		t.Errorf("the bad peer served %d pieces it did not have, but no client reported a failed piece (pieces_failed_total{holder=peer} = 0)", early)
	}
}
