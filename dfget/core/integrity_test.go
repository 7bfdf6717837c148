package core

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/dfget/config"
)

// A supernode that dropped the task (it found its cache file damaged)
// answers /peer/task with 502 "unknown client". dfget
// registers again with it and downloads the re-fetched file, with
// --notbs, in the file and the stream mode.
func TestTaskGoneRegistersAgain(t *testing.T) {
	body := content(6*pieceContent + 5)
	for _, stream := range []bool{false, true} {
		o := origin(t, body)
		sn := newFakeSupernode(t, body)
		sn.forgetAt = 3
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Stream, cfg.WindowSize, cfg.NotBS = stream, 2, true
		if stream {
			cfg.Output = "-"
		}
		peerServer(t, cfg)
		var buf bytes.Buffer
		code, out := run(t, cfg, &buf)
		t.Logf("stream %v: exit %d, %d registrations: %s", stream, code, sn.registers, lastLine(out))
		if code != 0 {
			b, _ := os.ReadFile(filepath.Join(cfg.LogDir(), "dfclient.log"))
			t.Logf("%s", b)
		}
		if code != 0 {
			t.Fatalf("stream %v: exit %d after the supernode forgot the client\n%s", stream, code, out)
		}
		if sn.registers != 2 {
			t.Errorf("stream %v: %d registrations, want 2", stream, sn.registers)
		}
		if stream {
			if !bytes.Equal(buf.Bytes(), body) {
				t.Fatalf("stream differs (%d of %d bytes)", buf.Len(), len(body))
			}
		} else {
			mustSame(t, cfg.Output, body)
		}
	}
}

// A supernode still dropping the task refuses the first registrations
// again (it deletes the task's state in steps, and a registration landing
// in between fails); dfget tries again a moment later instead of giving up.
func TestTaskGoneRegisterRefusedAtFirst(t *testing.T) {
	body := content(6*pieceContent + 5)
	o := origin(t, body)
	sn := newFakeSupernode(t, body)
	sn.forgetAt = 3
	refused := 0
	sn.refuse = func() bool {
		sn.mu.Lock()
		defer sn.mu.Unlock()
		if sn.registers == 1 && refused < 2 {
			refused++
			return true
		}
		return false
	}
	cfg := testConfig(t, o.URL+"/file", sn.node())
	cfg.NotBS = true
	code, out := run(t, cfg, nil)
	if code != 0 {
		t.Fatalf("exit %d after %d refused registrations\n%s", code, refused, out)
	}
	mustSame(t, cfg.Output, body)
	if refused != 2 || sn.registers != 2 {
		t.Errorf("%d refused, %d registrations; want 2 and 2", refused, sn.registers)
	}
}

// A supernode that keeps forgetting the client is asked again a bounded
// number of times; then the download fails (--notbs) instead of looping.
func TestTaskGoneBounded(t *testing.T) {
	body := content(6*pieceContent + 5)
	o := origin(t, body)
	sn := newFakeSupernode(t, body)
	sn.forgetEvery = 2
	cfg := testConfig(t, o.URL+"/file", sn.node())
	cfg.NotBS = true
	code, out := run(t, cfg, nil)
	if code != config.ExitDownloadError || !strings.Contains(out, "no longer knows this client") {
		t.Fatalf("exit %d, want 80 naming the forgetting supernode\n%s", code, out)
	}
	// The first registration and three more (maxReregister).
	if sn.registers != 4 {
		t.Errorf("%d registrations, want 4", sn.registers)
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// A stream against a supernode without stream support (Dragonfly 1.x:
// /peer/piece/stream is a missing route, 404). dfget finds out with one
// request, never posts a stream-cache report, and registers as the cdn
// pattern so the supernode never sends peers to pieces the stream cannot
// keep serving. The stream is exact.
func TestStreamAgainstSupernodeWithoutStream(t *testing.T) {
	body := content(6*pieceContent + 5)
	sn, code, buf, out := streamThrough(t, body, func(f *fakeSupernode) { f.noStream = true })
	sn.mu.Lock()
	defer sn.mu.Unlock()
	total := 0
	for _, n := range sn.streamReqs {
		total += n
	}
	t.Logf("exit %d: /peer/piece/stream requests %v, registration patterns %q", code, sn.streamReqs, sn.patterns)
	if code != 0 || !bytes.Equal(buf.Bytes(), body) {
		t.Fatalf("exit %d, %d of %d bytes\n%s", code, buf.Len(), len(body), out)
	}
	if total != 1 || sn.streamReqs["POST"] != 0 {
		t.Errorf("%d requests to /peer/piece/stream (%v), want exactly one probe and no POST", total, sn.streamReqs)
	}
	if len(sn.patterns) != 1 || sn.patterns[0] != "cdn" {
		t.Errorf("registered with patterns %q, want one cdn registration (never a holder)", sn.patterns)
	}
	if n := len(sn.peerAddr); n != 0 {
		t.Errorf("the stream client is a holder candidate (%d peers)", n)
	}
}

// With a supernode that has stream support nothing changes: the stream
// registers as p2p and its cache reports pieces.
func TestStreamAgainstSupernodeWithStream(t *testing.T) {
	body := content(3*pieceContent + 5)
	sn, code, buf, out := streamThrough(t, body, func(*fakeSupernode) {})
	if code != 0 || !bytes.Equal(buf.Bytes(), body) {
		t.Fatalf("exit %d\n%s", code, out)
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.streamReqs["POST"] == 0 || len(sn.patterns) != 1 || sn.patterns[0] != "" {
		t.Fatalf("stream requests %v, patterns %q: want cache reports and a p2p registration", sn.streamReqs, sn.patterns)
	}
}

// streamThrough streams body with --notbs and a window of 2 through a
// fake supernode that set adjusts, with a peer server.
func streamThrough(t *testing.T, body []byte, set func(*fakeSupernode)) (*fakeSupernode, int, *bytes.Buffer, string) {
	t.Helper()
	o := origin(t, body)
	sn := newFakeSupernode(t, body)
	set(sn)
	cfg := testConfig(t, o.URL+"/file", sn.node())
	cfg.Stream, cfg.Output, cfg.WindowSize, cfg.NotBS = true, "-", 2, true
	peerServer(t, cfg)
	var buf bytes.Buffer
	code, out := run(t, cfg, &buf)
	return sn, code, &buf, out
}

// Pieces that came from the supernode's cache without a digest are
// vouched for by the whole-file md5 alone. With no md5 to compare (no
// --md5, none in the finish) the file is not published: --notbs exits 80
// with no output; with an md5 in the finish it is checked and published.
func TestUndigestedPiecesNeedAnMd5(t *testing.T) {
	body := content(3*pieceContent + 7)
	o := origin(t, body)
	for _, withMd5 := range []bool{false, true} {
		sn := newFakeSupernode(t, body)
		sn.noPieceMd5, sn.noFinishMd5 = true, !withMd5
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Pattern, cfg.NotBS = config.PatternCDN, true
		code, out := run(t, cfg, nil)
		t.Logf("finish md5 %v: exit %d: %s", withMd5, code, lastLine(out))
		if withMd5 {
			if code != 0 {
				t.Fatalf("exit %d with the finish's md5\n%s", code, out)
			}
			mustSame(t, cfg.Output, body)
			continue
		}
		if code != config.ExitDownloadError || !strings.Contains(out, "no whole-file md5") {
			t.Fatalf("exit %d without any md5, want 80\n%s", code, out)
		}
		if _, err := os.Stat(cfg.Output); !os.IsNotExist(err) {
			t.Fatalf("output left after the failure: %v", err)
		}
	}
}

// A stream takes no supernode piece without a digest: no whole-file md5
// covers it before its bytes are out (here the second is served corrupt,
// which nothing would notice). The stream goes on from the source, exact,
// and no piece is fetched from the supernode; with --notbs it fails.
func TestStreamRefusesUndigestedPieces(t *testing.T) {
	body := content(3*pieceContent + 7)
	for _, notBS := range []bool{false, true} {
		o := origin(t, body)
		sn := newFakeSupernode(t, body)
		sn.noPieceMd5, sn.corrupt[1] = true, true
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Stream, cfg.Output, cfg.WindowSize, cfg.NotBS = true, "-", 2, notBS
		peerServer(t, cfg)
		var buf bytes.Buffer
		code, out := run(t, cfg, &buf)
		sn.mu.Lock()
		served := len(sn.served)
		sn.mu.Unlock()
		switch {
		case served != 0:
			t.Errorf("notbs %v: %d undigested pieces fetched from the supernode", notBS, served)
		case notBS && (code != config.ExitDownloadError || buf.Len() != 0):
			t.Errorf("notbs: exit %d, %d bytes out\n%s", code, buf.Len(), out)
		case !notBS && (code != 0 || !bytes.Equal(buf.Bytes(), body)):
			t.Errorf("from the source: exit %d, %d bytes out (the file's: %v)\n%s", code, buf.Len(), bytes.Equal(buf.Bytes(), body), out)
		}
	}
}
