package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// A piece is the whole requested range or a failure, even when the
// holder's Content-Length and the digest both agree with the short body.
func TestFetchPieceShortBody(t *testing.T) {
	const size = 1 << 20
	short := make([]byte, 5000)
	for i := range short {
		short[i] = byte(i)
	}
	shortWrapped := piece.Wrap(nil, short, size)
	for _, tc := range []struct {
		name    string
		wrapped bool
		rng     string
		body    []byte
		ok      bool
	}{
		{"wrapped, clipped range", true, "0-9999", shortWrapped, false},
		{"plain source range", false, "0-9999", short, false},
		{"wrapped, last piece of an unknown length", true, "0-" + strconv.Itoa(size-1), shortWrapped, true},
		{"whole range", false, "0-4999", short, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip, port := holder(t, func(*http.Request) (int, []byte) { return http.StatusPartialContent, tc.body })
			info := types.PieceInfo{Range: tc.rng, PieceSize: size, PieceMd5: piece.Md5Value(tc.body),
				PeerIP: ip, PeerPort: port, Path: "/peer/file/x", CID: "peer-1"}
			_, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Wrapped: tc.wrapped}, new([]byte))
			var mm *Md5MismatchError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("whole piece refused: %v", err)
			case !tc.ok && !errors.As(err, &mm):
				t.Fatalf("short piece: err %v, want a reported piece error", err)
			}
			t.Logf("err: %v", err)
		})
	}
}

// The length in an "md5:len" digest binds too.
func TestFetchPieceDigestLength(t *testing.T) {
	body := []byte("0123456789")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	info := types.PieceInfo{Range: "0-9", PieceSize: 1 << 20, PieceMd5: piece.Md5Hex(body) + ":11", Path: srv.URL + "/f"}
	_, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info}, new([]byte))
	var mm *Md5MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("length differs from the digest's: err %v", err)
	}
}

// A piece range longer than the piece size, or a piece size past the
// largest a supernode assigns, is refused before any buffer is sized by
// it or any holder is asked: a range of MaxInt64 bytes would panic the
// allocation, a large allocatable one exhaust memory.
func TestFetchPieceRangeBeyondPieceSize(t *testing.T) {
	var hits atomic.Int32
	ip, port := holder(t, func(*http.Request) (int, []byte) { hits.Add(1); return http.StatusPartialContent, []byte("x") })
	for _, tc := range []struct {
		rng  string
		size int32
	}{
		{"0-9223372036854775806", 1 << 20},
		{"0-1048576", 1 << 20},
		{"0-1048575", 0},
		{"0-9", piece.MaxSize + 1},
	} {
		info := types.PieceInfo{Range: tc.rng, PieceSize: tc.size, PeerIP: ip, PeerPort: port, Path: "/peer/file/x",
			CID: types.SuperNodeCIDPrefix + "x"}
		for _, wrapped := range []bool{true, false} {
			_, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Wrapped: wrapped, SourceURL: "http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + "/f"}, new([]byte))
			if err == nil {
				t.Errorf("range %s of a %d-byte piece (wrapped %v) accepted", tc.rng, tc.size, wrapped)
			}
			t.Logf("%s / %d: %v", tc.rng, tc.size, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("holder asked %d times", hits.Load())
	}
}
