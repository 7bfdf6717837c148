package core

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
	"github.com/damselfly-p2p/damselfly/dfget/core/progressbar"
	"github.com/damselfly-p2p/damselfly/pkg/rate"
)

// fallbackCase is a stream P2P wrote the head of before its only
// supernode failed: a Dragonfly 1.x one (md5 pieces, or in the source
// pattern none) or a Damselfly one (BLAKE3), of either pattern.
type fallbackCase struct {
	name                    string
	source, blake3, unsized bool
}

var fallbackCases = []fallbackCase{
	{name: "cdn, md5"},
	{name: "cdn, blake3", blake3: true},
	{name: "cdn, md5, length unknown", unsized: true},
	{name: "source pattern, no digest", source: true},
	{name: "source pattern, blake3", source: true, blake3: true},
}

// switchingOrigin serves before until the supernode has failed, then
// after: the file changes while the stream runs. It counts the requests
// without a Range, which only a fallback from byte 0 sends.
type switchingOrigin struct {
	*httptest.Server
	mu     sync.Mutex
	sn     *fakeSupernode
	whole  int
	before []byte
	after  []byte
}

func newSwitchingOrigin(t *testing.T, before, after []byte) *switchingOrigin {
	o := &switchingOrigin{before: before, after: after}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		sn := o.sn
		if r.Header.Get("Range") == "" {
			o.whole++
		}
		o.mu.Unlock()
		sn.mu.Lock()
		body := o.before
		if sn.failed {
			body = o.after
		}
		sn.mu.Unlock()
		http.ServeContent(w, r, "file", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(o.Close)
	return o
}

// run streams the file from tc's supernode, which holds before and fails
// after two pieces, and from o; it returns the exit code, the console
// and the bytes out.
func (o *switchingOrigin) run(t *testing.T, tc fallbackCase) (int, string, []byte) {
	t.Helper()
	url := o.URL + "/file"
	sn := newFakeSupernode(t, o.before)
	if tc.source {
		sn = newFakeSourceSupernode(t, o.before, url)
	}
	sn.failAfter, sn.blake3, sn.unknownLength = 2, tc.blake3, tc.unsized
	o.mu.Lock()
	o.sn = sn
	o.mu.Unlock()
	cfg := testConfig(t, url, sn.node())
	cfg.Stream, cfg.Output, cfg.WindowSize = true, "-", 1
	var buf bytes.Buffer
	code, out := run(t, cfg, &buf)
	return code, out, buf.Bytes()
}

// A stream P2P wrote the head of, whose supernode then fails, goes on
// from the source, which now holds another version of the file of the
// same length (changed in the head and in the tail). The source is read
// from byte 0 and its copy of the head checked against the digests the
// streamed pieces were verified with: the head differs, so the run fails
// (reason 3, exit 80) naming the cause, and nothing of the other version
// is out. Taking the tail from the first byte not yet out would have
// spliced the two versions and exited 0.
func TestStreamFallbackRefusesSourceOfOtherVersion(t *testing.T) {
	a := content(6*pieceContent + 5)
	b := otherVersion(a, len(a), 0, 5)
	for _, tc := range fallbackCases {
		code, out, got := newSwitchingOrigin(t, a, b).run(t, tc)
		t.Logf("%s: exit %d, %d bytes out: %s", tc.name, code, len(got), lastLine(out))
		if code != config.ExitDownloadError || !strings.Contains(out, "reason:3") ||
			!strings.Contains(out, "differs from the source's") || !strings.Contains(out, "another version of the file") {
			t.Errorf("%s: exit %d after a stream of one version and a source of another\n%s", tc.name, code, out)
		}
		if len(got) == 0 || len(got) >= len(a) || !bytes.Equal(got, a[:len(got)]) {
			t.Errorf("%s: the %d bytes out are not a head of the streamed version", tc.name, len(got))
		}
	}
}

// The same fallback from a source that still holds the streamed version:
// its copy of the head checks, is not written again, and the stream is
// the file exactly, read from the source once from byte 0.
func TestStreamFallbackFromUnchangedSource(t *testing.T) {
	a := content(6*pieceContent + 5)
	for _, tc := range fallbackCases {
		o := newSwitchingOrigin(t, a, a)
		code, out, got := o.run(t, tc)
		if code != 0 || !bytes.Equal(got, a) || !strings.Contains(out, "from the source station") {
			t.Errorf("%s: exit %d, %d bytes out (the file's: %v)\n%s", tc.name, code, len(got), bytes.Equal(got, a), out)
		}
		o.mu.Lock()
		whole := o.whole
		o.mu.Unlock()
		if whole != 1 {
			t.Errorf("%s: %d requests to the source without a Range, want the fallback's one", tc.name, whole)
		}
	}
}

// The progress bar counts the head a fallback reads again only once.
func TestAfterFirstSkipsTheHead(t *testing.T) {
	var got []int64
	add := afterFirst(10, func(n int64) { got = append(got, n) })
	for _, n := range []int64{4, 4, 4, 5, 0} {
		add(n)
	}
	if !slices.Equal(got, []int64{2, 5}) {
		t.Fatalf("added %v, want [2 5]", got)
	}
}

// The progress bar counts each byte of the file once when P2P falls
// back to the source, which reads the file from byte 0 again: a stream's
// pieces that Stop dropped, held after a gap, are not counted again with
// the head, nor a file's pieces, discarded with its partial file.
func TestFallbackBarCountsEachByteOnce(t *testing.T) {
	file := content(30)
	o := origin(t, file)
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	for _, stream := range []bool{true, false} {
		cfg := testConfig(t, o.URL+"/file", "127.0.0.1:1")
		cfg.Stream = stream
		d := &Download{cfg: cfg, io: IO{Data: io.Discard, Console: io.Discard}, log: quiet,
			bar: progressbar.New(nil, int64(len(file))), length: int64(len(file))}
		if stream {
			// P2P held pieces 0 and 2 (the bar counting each, as
			// OnPiece does), then failed: Stop writes 0 out and drops 2.
			w := downloader.NewStreamWriter(io.Discard, 3, false, false)
			for _, num := range []int{0, 2} {
				// Raw, as in the source pattern: checked by the
				// stream's own digest of it.
				p := &downloader.Piece{Num: num, Raw: true, Content: file[num*10 : num*10+10],
					Info: types.PieceInfo{PieceNum: num, Range: fmt.Sprintf("%d-%d", num*10, num*10+9), PieceSize: 10}}
				if err := w.WritePiece(context.Background(), p); err != nil {
					t.Fatal(err)
				}
				d.bar.Add(10)
			}
			written, err := w.Stop(context.Background())
			if err != nil || written != 10 {
				t.Fatalf("stop: %d bytes out, %v; want 10", written, err)
			}
			d.sw, d.streamed, d.streamLength = w, written, int64(len(file))
		} else {
			d.bar.Add(20) // two pieces P2P wrote to the file
		}
		if err := d.backSource(context.Background(), config.ReasonDownloadError); err != nil {
			t.Fatalf("stream %v: %v", stream, err)
		}
		if got := d.bar.Done(); got != int64(len(file)) {
			t.Errorf("stream %v: the bar counted %d bytes of a %d-byte file", stream, got, len(file))
		}
	}
}

// A stream's fallback reads the whole file from byte 0 again, so its
// default timeout (no --timeout) is the file's, length/minrate + 10 s, as
// docs/dfget.md says; not one made for the bytes P2P wrote before it
// failed, which are none when the first piece failed: 10 s for any file.
func TestStreamFallbackTimeoutIsTheFiles(t *testing.T) {
	cfg := config.New()
	cfg.Timeout, cfg.MinRate = 0, rate.MB
	const length = 1 << 30
	for _, written := range []int64{0, 5 << 20} {
		// What stream leaves for the fallback (d.sw, d.streamed).
		w := downloader.NewStreamWriter(io.Discard, 1, false, false)
		_, _ = w.Stop(context.Background())
		d := &Download{cfg: cfg, sw: w, streamed: written, streamLength: length, length: written}
		if got, want := cfg.DownloadTimeout(d.sourceLength()), cfg.DownloadTimeout(length); got != want {
			t.Errorf("fallback after %d bytes streamed of %d: timeout %v, want %v", written, length, got, want)
		}
	}
	// A file-mode fallback, or a stream's before P2P wrote into it, reads
	// the registered length.
	d := &Download{cfg: cfg, length: length}
	if got, want := cfg.DownloadTimeout(d.sourceLength()), cfg.DownloadTimeout(length); got != want {
		t.Errorf("fallback without a stream: timeout %v, want %v", got, want)
	}
}
