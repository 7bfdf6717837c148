package core

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/dfget/config"
)

// otherVersion is body changed in the given pieces, cut to n bytes.
func otherVersion(body []byte, n int, pieces ...int) []byte {
	v := bytes.Clone(body[:n])
	for _, p := range pieces {
		v[p*pieceContent+7] ^= 0x5a
	}
	return v
}

// Two supernodes whose caches hold two versions of the file: the first
// fails after some pieces and the download migrates to the second. The
// file is the second's version exactly, never a mix: the pieces written
// from the first are checked against the second's digests (the ones that
// differ are fetched again), and a second version of another length is
// downloaded from the start, to its own length.
func TestMigrationNeverMixesVersions(t *testing.T) {
	v1 := content(6*pieceContent + 11)
	for _, tc := range []struct {
		name string
		v2   []byte
	}{
		{"same length", otherVersion(v1, len(v1), 0, 2)},
		{"shorter", otherVersion(v1, 5*pieceContent+3, 1)},
	} {
		o := origin(t, nil)
		bad := newFakeSupernode(t, v1)
		bad.failAfter = 3
		good := newFakeSupernode(t, tc.v2)
		good.refuse = func() bool { bad.mu.Lock(); defer bad.mu.Unlock(); return bad.pulls == 0 }
		cfg := testConfig(t, o.URL+"/file", bad.node()+","+good.node())
		cfg.Pattern, cfg.NotBS = config.PatternCDN, true
		code, out := run(t, cfg, nil)
		if code != 0 || !strings.Contains(out, "migrated to node:"+good.node()) {
			t.Fatalf("%s: exit %d: %s", tc.name, code, out)
		}
		got, _ := os.ReadFile(cfg.Output)
		if !bytes.Equal(got, tc.v2) {
			t.Fatalf("%s: output is not the second version (%d bytes, want %d; equal to the first's prefix: %v)",
				tc.name, len(got), len(tc.v2), bytes.Equal(got, v1[:min(len(got), len(v1))]))
		}
	}
}

// A stream that moved to a supernode with another version of the file
// cannot take back the bytes it wrote: when that supernode offers a
// written piece with another digest in the algorithm it was verified with
// (md5 on two Dragonfly 1.x supernodes, BLAKE3 on two Damselfly ones), or
// both know the file's length and they differ, the stream fails (exit 80,
// even with the source allowed: the source too may be another version)
// instead of going on with the other version's bytes. A new supernode
// that would honour a startPiece (an older Damselfly one) is asked for no
// start: it offers the written pieces too, and the same check catches the
// other version, which it would otherwise have appended to the first
// one's head.
func TestStreamMigrationToOtherVersionFails(t *testing.T) {
	v1 := content(6*pieceContent + 5)
	for _, tc := range []struct {
		name          string
		v2            []byte
		blake3, start bool
	}{
		{"same length, md5", otherVersion(v1, len(v1), 0, 1, 2, 3, 4, 5), false, false},
		{"same length, blake3", otherVersion(v1, len(v1), 0, 1, 2, 3, 4, 5), true, false},
		{"same length, blake3, node honouring startPiece", otherVersion(v1, len(v1), 0, 1, 2, 3, 4, 5), true, true},
		{"shorter", otherVersion(v1, 5*pieceContent, 0), false, false},
	} {
		code, out, b := streamMigration(t, v1, tc.v2, func(bad, good *fakeSupernode) {
			bad.blake3, good.blake3, good.honourStart = tc.blake3, tc.blake3, tc.start
		})
		t.Logf("%s: exit %d, %d bytes out: %s", tc.name, code, len(b), lastLine(out))
		if code != config.ExitDownloadError || !strings.Contains(out, "reason:3") {
			t.Fatalf("%s: exit %d after streaming another version's bytes\n%s", tc.name, code, out)
		}
		if !bytes.Equal(b, v1[:len(b)]) {
			t.Fatalf("%s: the %d bytes out are not all the first version's", tc.name, len(b))
		}
		if !strings.Contains(out, "does not match the new supernode") && !strings.Contains(out, errOtherVersion.Error()) {
			t.Errorf("%s: the failure does not say why: %s", tc.name, lastLine(out))
		}
	}
}

// A stream that moved to a supernode whose digests it cannot compare with
// the ones it verified its pieces with (a Damselfly supernode's BLAKE3,
// then a Dragonfly 1.x one's md5, which offers the written pieces again)
// cannot prove another version: it does not fail but goes on from the
// source, and the stream is the file exactly.
func TestStreamMigrationAcrossDigestAlgorithmsFallsBack(t *testing.T) {
	v1 := content(6*pieceContent + 5)
	for _, tc := range []struct {
		name                  string
		badBlake3, goodBlake3 bool
	}{
		{"blake3 then md5", true, false},
		{"md5 then blake3", false, true},
	} {
		code, out, b := streamMigration(t, v1, v1, func(bad, good *fakeSupernode) {
			bad.blake3, good.blake3 = tc.badBlake3, tc.goodBlake3
		})
		if code != 0 || !bytes.Equal(b, v1) {
			t.Fatalf("%s: exit %d, %d bytes out (the file's: %v)\n%s", tc.name, code, len(b), bytes.Equal(b, v1), out)
		}
	}
}

// A first supernode that did not know the file's length (-1, a chunked
// source) and a second that does: no other version is proven while the
// length holds what was written, and the stream goes on through the
// second supernode. A known length shorter than what was written is
// another version.
func TestStreamMigrationFromUnknownLength(t *testing.T) {
	v1 := content(6*pieceContent + 5)
	code, out, b := streamMigration(t, v1, v1, func(bad, _ *fakeSupernode) { bad.unknownLength = true })
	if code != 0 || !bytes.Equal(b, v1) {
		t.Fatalf("exit %d, %d bytes out (the file's: %v)\n%s", code, len(b), bytes.Equal(b, v1), out)
	}
	if strings.Contains(out, "p2p stream failed") {
		t.Errorf("went to the source although the second supernode holds the rest:\n%s", out)
	}
	// The other way round: the second supernode does not know the length
	// yet (its fill of a chunked source is running).
	code, out, b = streamMigration(t, v1, v1, func(_, good *fakeSupernode) { good.unknownLength = true })
	if code != 0 || !bytes.Equal(b, v1) {
		t.Fatalf("second supernode without a length yet: exit %d, %d bytes out (the file's: %v)\n%s", code, len(b), bytes.Equal(b, v1), out)
	}
	// A second supernode whose file is shorter than the stream has
	// committed (three pieces, written, being written or held): the move is
	// refused, with nothing but the first version's bytes out.
	short := v1[:2*pieceContent]
	code, out, b = streamMigration(t, v1, short, func(bad, _ *fakeSupernode) { bad.unknownLength = true })
	if code != config.ExitDownloadError || !strings.Contains(out, errOtherVersion.Error()) || !bytes.Equal(b, v1[:len(b)]) {
		t.Fatalf("second supernode's file shorter than the stream so far: exit %d, %d bytes out\n%s", code, len(b), out)
	}
}

// streamMigration streams through a supernode holding v1 that fails after
// three pieces, then migrates to one holding v2 (the origin serves v2);
// set adjusts both fakes. It returns the exit code, the console and the
// bytes streamed.
func streamMigration(t *testing.T, v1, v2 []byte, set func(bad, good *fakeSupernode)) (int, string, []byte) {
	t.Helper()
	o := origin(t, v2)
	bad := newFakeSupernode(t, v1)
	bad.failAfter = 3
	good := newFakeSupernode(t, v2)
	good.refuse = func() bool { bad.mu.Lock(); defer bad.mu.Unlock(); return bad.pulls == 0 }
	set(bad, good)
	cfg := testConfig(t, o.URL+"/file", bad.node()+","+good.node())
	cfg.Stream, cfg.Output, cfg.WindowSize = true, "-", 1
	peerServer(t, cfg)
	var buf bytes.Buffer
	code, out := run(t, cfg, &buf)
	if !strings.Contains(out, "migrated to node:"+good.node()) {
		t.Fatalf("no migration: exit %d\n%s", code, out)
	}
	return code, out, buf.Bytes()
}
