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
// written piece with another digest, or has a file of another length, the
// stream fails (exit 80, even with the source allowed: the source too may
// be another version) instead of going on with the other version's bytes.
func TestStreamMigrationToOtherVersionFails(t *testing.T) {
	v1 := content(6*pieceContent + 5)
	for _, tc := range []struct {
		name string
		v2   []byte
	}{
		{"same length", otherVersion(v1, len(v1), 0, 1, 2, 3, 4, 5)},
		{"shorter", otherVersion(v1, 5*pieceContent, 0)},
	} {
		o := origin(t, tc.v2)
		bad := newFakeSupernode(t, v1)
		bad.failAfter = 3
		good := newFakeSupernode(t, tc.v2)
		good.refuse = func() bool { bad.mu.Lock(); defer bad.mu.Unlock(); return bad.pulls == 0 }
		cfg := testConfig(t, o.URL+"/file", bad.node()+","+good.node())
		cfg.Stream, cfg.WindowSize = true, 1
		peerServer(t, cfg)
		var buf bytes.Buffer
		code, out := run(t, cfg, &buf)
		t.Logf("%s: exit %d, %d bytes out: %s", tc.name, code, buf.Len(), lastLine(out))
		if code != config.ExitDownloadError {
			t.Fatalf("%s: exit %d after streaming another version's bytes\n%s", tc.name, code, out)
		}
		if b := buf.Bytes(); !bytes.Equal(b, v1[:len(b)]) {
			t.Fatalf("%s: the %d bytes out are not all the first version's", tc.name, len(b))
		}
		if !strings.Contains(out, "does not match the new supernode") && !strings.Contains(out, errOtherVersion.Error()) {
			t.Errorf("%s: the failure does not say why: %s", tc.name, lastLine(out))
		}
	}
}
