package downloader

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// In the source pattern a piece the supernode names the source for (its
// path a full URL) is fetched from the source. An answer from the source
// that is not the range asked for (a 200 ignoring the Range, a wrong
// Content-Range, more bytes than asked) is the source's or a proxy's
// fault, not the task's digests': the piece fails and is fetched again,
// with no FILE_MD5_NOT_MATCH, which in the source pattern would make the
// supernode drop the task for every client. Bytes of the right shape that
// fail the digest are reported, as Dragonfly 1.x does (the source
// changed), and a peer's wrong answer is reported so it is avoided. A
// peer that answers 503 (a peer server whose stream cache has as many
// pieces out as it allows) fails the piece with no report at all, as in
// Dragonfly 1.x: the supernode hears a failed piece and schedules it again.
func TestSourceBadAnswerNotReported(t *testing.T) {
	file := []byte(strings.Repeat("abcdefghij", 3)) // 30 bytes, pieces of 10
	wholeFile := func(w http.ResponseWriter, _ *http.Request) { w.Write(file) }
	for _, tc := range []struct {
		name   string
		peer   bool
		serve  http.HandlerFunc
		report string // the errorType reported, "" for none
	}{
		{"source ignores Range", false, wholeFile, ""},
		{"source sends another range", false, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-9/30")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(file[:10])
		}, ""},
		{"source sends more than asked", false, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusPartialContent)
			w.Write(file[10:])
		}, ""},
		{"source sends other bytes", false, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte("0123456789"))
		}, types.PieceErrorFileMd5NotMatch},
		{"peer ignores Range", true, wholeFile, types.PieceErrorFileMd5NotMatch},
		{"peer busy", true, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "too many stream pieces being sent", http.StatusServiceUnavailable)
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holder := httptest.NewServer(tc.serve)
			defer holder.Close()
			var mu sync.Mutex
			var reports []string
			node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/peer/piece/error" {
					mu.Lock()
					reports = append(reports, r.URL.Query().Get("errorType"))
					mu.Unlock()
				}
			}))
			defer node.Close()
			host, port, _ := net.SplitHostPort(strings.TrimPrefix(holder.URL, "http://"))
			p, _ := strconv.Atoi(port)
			pi := types.PieceInfo{PieceNum: 1, Range: "10-19", PieceSize: 10, PieceMd5: piece.Md5Value(file[10:20]),
				CID: types.SuperNodeCIDPrefix + "x", PeerIP: host, PeerPort: p, Path: holder.URL + "/f?sig=first-client"}
			if tc.peer {
				pi.CID, pi.Path = "peer-1", "/peer/file/x"
			}
			d := &P2P{Client: api.New(), Task: Task{Node: strings.TrimPrefix(node.URL, "http://"), TaskID: "t", CID: "me",
				PieceSize: 10}, SourceURL: holder.URL + "/f?sig=mine", Writer: &countWriter{}, Log: quietLog()}
			if ok, err := d.fetch(context.Background(), pi, nil); ok || err != nil {
				t.Fatalf("a wrong answer gave a piece: %v, %v", ok, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := strings.Join(reports, ","); got != tc.report {
				t.Fatalf("reported %q, want %q", got, tc.report)
			}
		})
	}
}

// A source that keeps answering with the wrong bytes range (a proxy that
// ignores Range) ends the attempt after maxSourceFails answers in a row,
// so the download falls back instead of asking again until its timeout;
// a piece written in between starts the count again.
func TestSourceBadAnswersEndTheAttempt(t *testing.T) {
	file := []byte(strings.Repeat("abcdefghij", 3))
	var ignore sync.Mutex
	ignoring := true
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ignore.Lock()
		defer ignore.Unlock()
		if ignoring {
			w.Write(file) // 200, the whole file
			return
		}
		w.WriteHeader(http.StatusPartialContent)
		w.Write(file[10:20])
	}))
	defer src.Close()
	node := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer node.Close()
	pi := types.PieceInfo{PieceNum: 1, Range: "10-19", PieceSize: 10, PieceMd5: piece.Md5Value(file[10:20]),
		CID: types.SuperNodeCIDPrefix + "x", Path: src.URL + "/f"}
	d := &P2P{Client: api.New(), Task: Task{Node: strings.TrimPrefix(node.URL, "http://"), TaskID: "t", CID: "me",
		PieceSize: 10}, SourceURL: src.URL + "/f", Writer: &countWriter{}, Log: quietLog()}
	fetch := func() (bool, error) { return d.fetch(context.Background(), pi, nil) }
	for i := 1; i < maxSourceFails; i++ {
		if ok, err := fetch(); ok || err != nil {
			t.Fatalf("wrong answer %d: %v, %v; want a failed piece, the attempt going on", i, ok, err)
		}
	}
	ignore.Lock()
	ignoring = false
	ignore.Unlock()
	if ok, err := fetch(); !ok || err != nil {
		t.Fatalf("right answer: %v, %v", ok, err)
	}
	ignore.Lock()
	ignoring = true
	ignore.Unlock()
	for i := 1; i < maxSourceFails; i++ {
		if ok, err := fetch(); ok || err != nil {
			t.Fatalf("wrong answer %d after a written piece: %v, %v; the count did not start again", i, ok, err)
		}
	}
	if _, err := fetch(); !errors.Is(err, api.ErrSourceReply) {
		t.Fatalf("answer %d in a row not the range: %v, want the attempt ended with %v", maxSourceFails, err, api.ErrSourceReply)
	}
}
