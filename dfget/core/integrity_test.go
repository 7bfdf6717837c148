package core

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/dfget/config"
)

// issue 11 item 8: a supernode that dropped the task (it found its cache
// file damaged) answers /peer/task with 502 "unknown client". dfget
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
