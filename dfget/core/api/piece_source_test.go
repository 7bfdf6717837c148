package api

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// askLog records what a test server was asked: URI, Range, Authorization.
type askLog struct {
	mu    sync.Mutex
	asked []string
}

func (l *askLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, r.URL.RequestURI()+" "+r.Header.Get("Range")+" "+r.Header.Get("Authorization"))
}

func (l *askLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.asked, ",")
}

// hostPort splits a test server's URL into a holder's PeerIP and PeerPort.
func hostPort(t *testing.T, u string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

// In the source pattern the supernode names the source as a piece's path:
// its task's URL, that of whichever client made it read the source. A
// second client of the same task whose URL differs (a query parameter
// --filter drops: here another client's signature, which the origin does
// not take from us) fetches the piece from its own URL, with its --header
// credentials and its Range re-based, as Dragonfly 1.x treats any path
// with "://" as the source. A peer holder gets neither the headers nor a
// re-based range.
func TestFetchSourcePieceFromOwnURL(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 13)
	}
	var originLog, peerLog askLog
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originLog.add(r)
		if r.URL.Query().Get("sig") != "mine" || r.Header.Get("Authorization") != "Bearer mine" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer origin.Close()
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peerLog.add(r)
		// The peer holds the user's range of the file, from its byte 0.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data[100:]))
	}))
	defer peer.Close()
	hdr := map[string]string{"Authorization": "Bearer mine", "Range": "bytes=100-"}
	mine := origin.URL + "/f?sig=mine"
	want := data[200:300] // piece 100-199 of the range bytes=100-

	t.Run("source named by another client's URL", func(t *testing.T) {
		ip, port := hostPort(t, origin.URL)
		info := types.PieceInfo{Range: "100-199", PieceNum: 1, PieceSize: 100, PieceMd5: piece.Md5Value(want),
			CID: types.SuperNodeCIDPrefix + "x", PeerIP: ip, PeerPort: port, Path: origin.URL + "/f?sig=theirs"}
		b, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Headers: hdr, SourceURL: mine}, new([]byte))
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("piece from the source: %v (origin asked %q)", err, originLog.String())
		}
		if got := originLog.String(); got != "/f?sig=mine bytes=200-299 Bearer mine" {
			t.Fatalf("origin asked %q, want our own URL, the re-based range and our headers", got)
		}
	})
	t.Run("peer", func(t *testing.T) {
		ip, port := hostPort(t, peer.URL)
		info := types.PieceInfo{Range: "100-199", PieceNum: 1, PieceSize: 100, PieceMd5: piece.Md5Value(want),
			CID: "peer-1", PeerIP: ip, PeerPort: port, Path: "/peer/file/x"}
		b, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Headers: hdr, SourceURL: mine}, new([]byte))
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("piece from the peer: %v (peer asked %q)", err, peerLog.String())
		}
		if got := peerLog.String(); got != "/peer/file/x bytes=100-199 " {
			t.Fatalf("peer asked %q, want its own path and range, no headers", got)
		}
	})
}
