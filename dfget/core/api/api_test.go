package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

func holder(t *testing.T, body func(r *http.Request) (int, []byte)) (string, int) {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, b := body(r)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(code)
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	host, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return host, p
}

func TestFetchPieceChecks(t *testing.T) {
	const size = 1 << 20
	good := piece.Wrap(nil, []byte(strings.Repeat("z", 5000)), size)
	bad := append([]byte(nil), good...)
	bad[100] ^= 1
	truncated := piece.Wrap(nil, []byte("abc"), size)
	truncated = truncated[:len(truncated)-1]
	for _, tc := range []struct {
		name   string
		status int
		body   []byte
		md5    string
		check  func(error) bool
	}{
		{"good", 206, good, piece.Md5Value(good), func(e error) bool { return e == nil }},
		{"good without md5", 206, good, "", func(e error) bool { return e == nil }},
		{"corrupt", 206, bad, piece.Md5Value(good), func(e error) bool { var m *Md5MismatchError; return errors.As(e, &m) }},
		{"bad wrapper", 206, truncated, "", func(e error) bool { var m *Md5MismatchError; return errors.As(e, &m) }},
		{"missing", 404, nil, "", func(e error) bool { return errors.Is(e, ErrPieceNotFound) }},
		{"error", 500, nil, "", func(e error) bool { return e != nil }},
	} {
		var gotHdr http.Header
		ip, port := holder(t, func(r *http.Request) (int, []byte) { gotHdr = r.Header; return tc.status, tc.body })
		info := types.PieceInfo{Range: "0-" + strconv.Itoa(max(len(tc.body), 1)-1), PieceNum: 0, PieceSize: size,
			PieceMd5: tc.md5, PeerIP: ip, PeerPort: port, Path: "/peer/file/x", CID: types.SuperNodeCIDPrefix + "x"}
		buf := new([]byte)
		b, err := New().FetchPiece(context.Background(), &FetchRequest{Info: info, Wrapped: true}, buf)
		if !tc.check(err) {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if err == nil && string(b) != string(tc.body) {
			t.Errorf("%s: body differs", tc.name)
		}
		if gotHdr.Get("pieceNum") != "0" || gotHdr.Get("pieceSize") != strconv.Itoa(size) || !strings.HasPrefix(gotHdr.Get("Range"), "bytes=0-") {
			t.Errorf("%s: headers %v", tc.name, gotHdr)
		}
	}
}

func TestQueriesAreEscaped(t *testing.T) {
	var raw string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw = r.URL.RawQuery
		_, _ = w.Write([]byte(`{"code":611}`))
	}))
	defer s.Close()
	node := s.Listener.Addr().String()
	if err := New().ReportPieceSuccess(context.Background(), node, "t&x=1", "c id", "cdnnode:1.2.3.4~t", "0-9", true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(raw, "taskId=t%26x%3D1") || !strings.Contains(raw, "cid=c+id") || !strings.Contains(raw, "dstCid=cdnnode%3A1.2.3.4~t") {
		t.Fatalf("query %q is not escaped", raw)
	}
	if strings.Contains(raw, "share") {
		t.Fatalf("query %q names share for a shared piece (a v1 supernode never sees it)", raw)
	}
	if err := New().ReportPieceSuccess(context.Background(), node, "t", "c", "d", "0-9", false); err != nil || !strings.Contains(raw, "share=0") {
		t.Fatalf("unshared piece: query %q, %v", raw, err)
	}
	if err := New().ReportServiceDown(context.Background(), node, "t", "c"); err == nil {
		t.Fatal("code 611 accepted for service down (wants 612)")
	}
}

func TestRegisterErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
	}{
		{500, `{"code":500,"message":"url is not reachable"}`},
		{200, `{"code":607,"msg":"nope"}`},
		{200, `{"code":200,"data":{"taskId":""}}`},
		// A CDN piece of 5 bytes carries no content: the piece count
		// would divide by zero.
		{200, `{"code":200,"data":{"taskId":"t","fileLength":10,"pieceSize":5}}`},
		{200, `{"code":200,"data":{"taskId":"t","fileLength":10,"pieceSize":15728641}}`},
		{200, `not json`},
	} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(tc.body))
		}))
		_, err := New().Register(context.Background(), s.Listener.Addr().String(), &types.RegisterRequest{})
		s.Close()
		if err == nil {
			t.Errorf("%d %s: accepted", tc.status, tc.body)
		}
	}
}

func TestBufferPoolReuses(t *testing.T) {
	var p BufferPool
	a := p.Get(100)
	*a = append(*a, 1, 2, 3)
	p.Put(a)
	b := p.Get(50)
	if b != a || len(*b) != 0 {
		t.Fatal("buffer not reused or not emptied")
	}
	p.Put(b)
	if c := p.Get(1000); cap(*c) < 1000 || c == a {
		t.Fatal("too small a buffer handed out")
	}
}
