package core

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

// --digest through a supernode that does not check it (the fake, like a
// Dragonfly 1.x one): dfget checks the file itself. The right digest
// publishes the file; a wrong one exits 80 with no output, whether the
// P2P file or the source fallback's file is the one checked; the stream
// exits 80 at its end.
func TestWholeFileDigest(t *testing.T) {
	body := content(2*pieceContent + 9)
	o := origin(t, body)
	right, wrong := digest.Sum(digest.SHA256, body).String(), digest.Sum(digest.SHA256, body[1:]).String()
	for _, tc := range []struct {
		name, digest string
		notbs, ok    bool
	}{
		{"right", right, true, true},
		{"wrong p2p", wrong, true, false},
		{"wrong with fallback", wrong, false, false},
	} {
		sn := newFakeSupernode(t, body)
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Pattern, cfg.NotBS, cfg.Digest = config.PatternCDN, tc.notbs, tc.digest
		code, out := run(t, cfg, nil)
		if (code == 0) != tc.ok || (!tc.ok && code != config.ExitDownloadError) {
			t.Fatalf("%s: exit %d: %s", tc.name, code, out)
		}
		if tc.ok {
			mustSame(t, cfg.Output, body)
		} else if _, err := os.Stat(cfg.Output); !errors.Is(err, os.ErrNotExist) || !strings.Contains(out, "sha256 mismatch") {
			t.Fatalf("%s: output after a mismatch: %v; %s", tc.name, err, out)
		}
	}
	for _, d := range []string{right, wrong} {
		sn := newFakeSupernode(t, body)
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Stream, cfg.Output, cfg.Digest, cfg.NotBS = true, "-", d, true
		var got bytes.Buffer
		if code, out := run(t, cfg, &got); (code == 0) != (d == right) || !bytes.Equal(got.Bytes(), body) {
			t.Fatalf("stream, right %v: exit %d, %d bytes: %s", d == right, code, got.Len(), out)
		}
	}
}

// Run checks the digest itself for library callers that did not Complete
// a config: a malformed one is a usage error, nothing is contacted.
func TestRunRefusesMalformedDigest(t *testing.T) {
	cfg := config.New()
	cfg.URL, cfg.Digest = "http://127.0.0.1:1/file", "sha256:xyz"
	var console bytes.Buffer
	if code := Run(context.Background(), cfg, IO{Console: &console}); code != config.ExitUsage ||
		!strings.Contains(console.String(), "--digest") {
		t.Fatalf("exit %d: %s", code, console.String())
	}
}
