package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// In source-CDN mode a piece's range is an offset in the file being
// downloaded. Fetched from the source with a user Range, it is re-based
// onto the Range's start (Dragonfly 1.x's wire behaviour), so the piece is
// the Range's bytes; a piece the Range cannot hold, or a suffix Range
// (start unknown), is refused without asking the source. A peer holds the
// range itself and is asked for the piece's own range.
func TestFetchPieceRebasesOntoUserRange(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path+" "+r.Header.Get("Range"))
		mu.Unlock()
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	src := srv.URL + "/f"
	for _, tc := range []struct {
		name, userRange, path, rng string
		want                       []byte // nil: refused
		asked                      string
	}{
		{"no Range", "", src, "0-99", data[:100], "/f bytes=0-99"},
		{"open Range", "bytes=100-", src, "0-99", data[100:200], "/f bytes=100-199"},
		{"closed Range, last piece", "bytes=100-349", src, "200-249", data[300:350], "/f bytes=300-349"},
		{"piece past the Range's end", "bytes=100-349", src, "200-299", nil, ""},
		{"suffix Range", "bytes=-300", src, "0-99", nil, ""},
		{"peer holder", "bytes=100-", "/peer", "0-99", data[:100], "/peer bytes=0-99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = nil
			hdr := map[string]string{}
			if tc.userRange != "" {
				hdr["Range"] = tc.userRange
			}
			info := types.PieceInfo{Range: tc.rng, PieceSize: 4 << 20, Path: tc.path, CID: "cdnnode:x"}
			if tc.path != src {
				// A peer's piece is taken only with a digest; its path is
				// one on its own server, not a full URL.
				info.PieceMd5 = piece.Md5Value(tc.want)
				info.PeerIP, info.PeerPort = hostPort(t, srv.URL)
			}
			req := &FetchRequest{Info: info, Headers: hdr, SourceURL: src}
			got, err := New().FetchPiece(context.Background(), req, new([]byte))
			switch {
			case tc.want == nil && err == nil:
				t.Fatalf("piece %s with Range %q taken: %d bytes", tc.rng, tc.userRange, len(got))
			case tc.want == nil:
				t.Logf("refused: %v", err)
			case err != nil:
				t.Fatalf("piece %s with Range %q: %v", tc.rng, tc.userRange, err)
			case !bytes.Equal(got, tc.want):
				t.Fatalf("piece %s with Range %q: wrong bytes", tc.rng, tc.userRange)
			}
			if a := strings.Join(asked, ","); a != tc.asked {
				t.Fatalf("asked %q, want %q", a, tc.asked)
			}
		})
	}
}
