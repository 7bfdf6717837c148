package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

func countingServer(t *testing.T, body []byte) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

// A piece without a digest is never taken from a peer: in source-CDN mode
// it comes from the download's own source URL instead, whatever path the
// supernode named; in CDN mode it is refused unless the holder is the
// supernode.
func TestFetchPieceWithoutDigest(t *testing.T) {
	good := []byte("the right bytes")
	liar, liarHits := countingServer(t, []byte("the wrong bytes"))
	origin, originHits := countingServer(t, good)
	src := types.PieceInfo{Range: "0-14", PieceSize: 1 << 20, CID: "peer-1", Path: liar.URL + "/registered/path"}
	b, err := New().FetchPiece(context.Background(), &FetchRequest{Info: src, SourceURL: origin.URL + "/f"}, new([]byte))
	if err != nil || string(b) != string(good) || liarHits.Load() != 0 || originHits.Load() != 1 {
		t.Fatalf("source mode: %q %v (liar asked %d times, origin %d)", b, err, liarHits.Load(), originHits.Load())
	}
	if _, err := New().FetchPiece(context.Background(), &FetchRequest{Info: src}, new([]byte)); !errors.Is(err, ErrNoDigest) {
		t.Fatalf("source mode without a source URL: err %v", err)
	}

	wrapped := piece.Wrap(nil, []byte("wrong"), 1<<20)
	peer, peerHits := countingServer(t, wrapped)
	info := types.PieceInfo{Range: "0-9", PieceSize: 1 << 20, CID: "peer-1", Path: peer.URL + "/peer/file/x"}
	if _, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Wrapped: true}, new([]byte)); !errors.Is(err, ErrNoDigest) || peerHits.Load() != 0 {
		t.Fatalf("cdn mode, peer without digest: err %v, peer asked %d times", err, peerHits.Load())
	}
	info.CID = types.SuperNodeCIDPrefix + "127.0.0.1~t"
	if _, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Wrapped: true}, new([]byte)); err != nil {
		t.Fatalf("cdn mode, supernode without digest: %v", err)
	}
}

// The user's --header values are the origin's (credentials among them): in
// source-CDN mode they go with a piece fetched from the source URL and
// never to a peer holder, digest or not.
func TestFetchPieceHeadersOnlyToSource(t *testing.T) {
	body := []byte("0123456789")
	seen := func() (*httptest.Server, *atomic.Value) {
		var auth atomic.Value
		auth.Store("")
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth.Store("asked:" + r.Header.Get("Authorization") + r.Header.Get("Cookie"))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(body)
		}))
		t.Cleanup(s.Close)
		return s, &auth
	}
	peer, peerSaw := seen()
	origin, originSaw := seen()
	hdr := map[string]string{"Authorization": "Bearer origin-secret", "Cookie": "session=origin"}
	ip, port := hostPort(t, peer.URL)
	info := types.PieceInfo{Range: "0-9", PieceSize: 1 << 20, CID: "peer-1", PeerIP: ip, PeerPort: port, Path: "/peer/file/x",
		PieceMd5: piece.Md5Value(body)}
	req := &FetchRequest{Info: info, Headers: hdr, SourceURL: origin.URL + "/f"}
	if _, err := New().FetchPiece(context.Background(), req, new([]byte)); err != nil {
		t.Fatalf("from the peer: %v", err)
	}
	if got := peerSaw.Load().(string); got != "asked:" {
		t.Fatalf("the peer holder was asked with %q, want none of the user's origin headers", got)
	}
	req.Info.PieceMd5 = "" // without a digest it comes from the source
	if _, err := New().FetchPiece(context.Background(), req, new([]byte)); err != nil {
		t.Fatalf("from the source: %v", err)
	}
	if got := originSaw.Load().(string); got != "asked:Bearer origin-secretsession=origin" {
		t.Fatalf("the source got %q, want the user's headers", got)
	}
}
