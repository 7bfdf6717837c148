package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// replyServer answers every request with status, the given headers and
// body; it flushes before writing so the body goes out chunked, with no
// Content-Length, as a source that ignores Range may send it.
func replyServer(t *testing.T, status int, hdr map[string]string, body []byte) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		w.(http.Flusher).Flush()
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s.URL
}

// A source-CDN piece is asked for with a Range: the answer must be that
// range. A 200 (the source ignored Range) is the file from byte 0, so it
// is only taken for a range that starts there and only if it is exactly
// the range; a 206 whose Content-Range names other bytes, or with more
// bytes than the range, is refused. Such an answer from a peer is reported
// like a mismatch (the peer is avoided); from the source (named by a full
// URL, or any piece without a digest) it is a plain failure: the task's
// digests are not in question, and in the source pattern a reported
// mismatch drops the task for every client.
func TestFetchSourcePieceReply(t *testing.T) {
	file := []byte(strings.Repeat("0123456789", 3)) // 30 bytes
	for _, tc := range []struct {
		name   string
		rng    string
		status int
		hdr    map[string]string
		body   []byte
		ok     bool
	}{
		{"200 for a later range", "10-19", 200, nil, file, false},
		{"200 for a later range, body cut to length", "10-19", 200, nil, file[:10], false},
		{"200 for the first range, whole file", "0-9", 200, nil, file, false},
		{"200 for the first range, exact", "0-9", 200, nil, file[:10], true},
		{"206 starting elsewhere", "10-19", 206, map[string]string{"Content-Range": "bytes 0-9/30"}, file[:10], false},
		{"206 ending past the range", "10-19", 206, map[string]string{"Content-Range": "bytes 10-29/30"}, file[10:], false},
		{"206 clipped before the end of file", "10-19", 206, map[string]string{"Content-Range": "bytes 10-14/30"}, file[10:15], false},
		{"206 unsatisfied form", "10-19", 206, map[string]string{"Content-Range": "bytes */30"}, file[10:20], false},
		{"206 longer than the range", "10-19", 206, map[string]string{"Content-Length": "20"}, file[10:], false},
		{"206 right range", "10-19", 206, map[string]string{"Content-Range": "bytes 10-19/30"}, file[10:20], true},
		{"206 without Content-Range (v1 peer server)", "10-19", 206, nil, file[10:20], true},
		{"204", "10-19", 204, nil, nil, false},
	} {
		start, _ := strconv.Atoi(strings.Split(tc.rng, "-")[0])
		right := file[start : start+10]
		for _, from := range []string{"source", "source, no digest", "peer"} {
			t.Run(tc.name+"/"+from, func(t *testing.T) {
				srv := replyServer(t, tc.status, tc.hdr, tc.body)
				info := types.PieceInfo{Range: tc.rng, PieceNum: 1, PieceSize: 10, CID: types.SuperNodeCIDPrefix + "x",
					Path: srv + "/f", PieceMd5: piece.Md5Value(right)}
				switch from {
				case "source, no digest":
					info.PieceMd5 = ""
				case "peer":
					info.CID, info.Path = "peer-1", "/peer/file/x"
					info.PeerIP, info.PeerPort = hostPort(t, srv)
				}
				b, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, SourceURL: srv + "/f"}, new([]byte))
				switch {
				case tc.ok && (err != nil || string(b) != string(right)):
					t.Fatalf("refused or wrong: %q, %v", b, err)
				case !tc.ok && err == nil:
					t.Fatalf("accepted %q as bytes %s", b, tc.rng)
				case tc.ok:
					return
				}
				var mm *Md5MismatchError
				if reported := errors.As(err, &mm); reported != (from == "peer") || errors.Is(err, ErrSourceReply) == reported {
					t.Fatalf("from the %s: err %v, reported as a mismatch %v", from, err, reported)
				}
				t.Logf("err: %v", err)
			})
		}
	}
}

// The wrapped answers peers get today keep working: a Dragonfly 1.x or
// Damselfly peer server's 206 without Content-Range, and a supernode piece
// server's (or nginx's) 206 clipped to the end of the file for the last
// piece of a file whose length was unknown when it was scheduled.
func TestFetchWrappedPieceReplyInterop(t *testing.T) {
	const size = 1 << 20
	content := []byte(strings.Repeat("w", 3000))
	wrapped := piece.Wrap(nil, content, size)
	start := int64(2 * size)
	rng := strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(start+size-1, 10)
	clipped := "bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(start+int64(len(wrapped))-1, 10) +
		"/" + strconv.FormatInt(start+int64(len(wrapped)), 10)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		ok   bool
	}{
		{"peer server, no Content-Range", map[string]string{"Content-Length": strconv.Itoa(len(wrapped))}, true},
		{"piece server, clipped at the end of file", map[string]string{"Content-Range": clipped}, true},
		{"clipped, but not at the end of file", map[string]string{"Content-Range": clipped[:strings.LastIndex(clipped, "/")] + "/" + strconv.Itoa(4*size)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := replyServer(t, http.StatusPartialContent, tc.hdr, wrapped)
			info := types.PieceInfo{Range: rng, PieceNum: 2, PieceSize: size, PieceMd5: piece.Md5Value(wrapped), CID: "peer-1", Path: srv + "/peer/file/x"}
			b, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Wrapped: true}, new([]byte))
			if tc.ok != (err == nil) || (tc.ok && string(b) != string(wrapped)) {
				t.Fatalf("ok %v: err %v", tc.ok, err)
			}
		})
	}
}
