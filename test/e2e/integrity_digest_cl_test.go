package e2e

import (
	"regexp"
	"testing"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// Issue 12, dfget side: a supernode that gives BLAKE3 piece digests to
// the dfgets that ask (every dfget asks) makes them verify pieces with
// BLAKE3, not md5. A liar that claims every piece and serves well-wrapped
// pieces of the right length with wrong bytes is caught by that check,
// reported as FILE_MD5_NOT_MATCH and avoided: every honest dfget, run
// with --notbs so the source cannot paper over a miss, exits 0 with the
// exact file, and its log shows BLAKE3 mismatches for the liar's pieces
// and no md5 one.
//
// This needs the supernode side of issue 12. Against a supernode that
// gives no pieceDigest (a Dragonfly 1.x one, or main before issue 12) the
// files are still right, but the dfgets check md5 and the test fails on
// the missing BLAKE3 mismatches.
func TestIntegrityDigestLiar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts supernodes and dfget swarms")
	}
	data := randomData(swarmFileSize, 1212)
	o := newOrigin(t)
	for _, cdn := range []string{"local", "source"} {
		t.Run(cdn, func(t *testing.T) {
			rawURL := o.add("/digest-"+cdn+".bin", data)
			sn := startSupernode(t, t.TempDir(), "--cdn-pattern", cdn)
			liar := startLiar(t, sn, swarmBadIP, rawURL, false)
			c := swarmCase{cdnPattern: cdn, peer: "liar", notbs: true}
			peers, runs, outs := runHonestSwarm(t, sn, c, rawURL)
			contentSize := int64(liar.reg.PieceSize)
			if !liar.raw() {
				contentSize = piece.ContentSize(liar.reg.PieceSize)
			}
			var blake3, md5 int
			for i, r := range runs {
				if r.code != 0 {
					t.Errorf("dfget %d: exit %d: %s", i, r.code, lastLine(r.stdout+r.stderr))
				}
				checkSwarmOutput(t, i, r, outs[i], data, contentSize)
				b, m := digestMismatches(peers[i].clientLog(), swarmBadIP)
				t.Logf("dfget %d: exit %d; %d BLAKE3 and %d md5 mismatches from the liar", i, r.code, b, m)
				blake3, md5 = blake3+b, md5+m
			}
			checkLiarAsked(t, sn, liar, cdn == "source")
			checkFailuresReported(t, sn, liar)
			if liar.hits.Load() > 0 && blake3 == 0 {
				t.Errorf("the liar served %d pieces but no dfget logged a BLAKE3 mismatch (%d md5 ones): did the supernode give no pieceDigest?",
					liar.hits.Load(), md5)
			}
			if md5 > 0 {
				t.Errorf("%d pieces were checked with md5 though the supernode gives BLAKE3 digests", md5)
			}
		})
	}
}

// digestMismatches counts the failed fetches from ip that a dfget log
// shows as BLAKE3 and as md5 mismatches (md5 is reported as bare hex).
func digestMismatches(log, ip string) (blake3, md5 int) {
	from := `piece \d+ from \S+ \(` + regexp.QuoteMeta(ip) + `:\d+\): .*`
	blake3 = len(regexp.MustCompile(from+`got blake3:[0-9a-f]{64}, want blake3:[0-9a-f]{64}`).FindAllStringIndex(log, -1))
	md5 = len(regexp.MustCompile(from+`got [0-9a-f]{32}, want [0-9a-f]{32}`).FindAllStringIndex(log, -1))
	return blake3, md5
}
