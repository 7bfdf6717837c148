package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/preheat"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/pull"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/task"
)

type fixture struct {
	tasks    *MockTasks
	pulls    *MockPuller
	peers    *peer.Manager
	gc       *MockGC
	pe       *MockPieceErrors
	preheats *MockPreheats
	mx       *metrics.Metrics
	logs     *logtest.Hook
	srv      *httptest.Server
}

// loopback is the address the fixture's calls come from.
var loopback = netip.MustParseAddr("127.0.0.1")

// newFixture serves the API over mocks; opts set the other Deps.
func newFixture(t *testing.T, opts ...func(*Deps)) *fixture {
	ctrl := gomock.NewController(t)
	f := &fixture{tasks: NewMockTasks(ctrl), pulls: NewMockPuller(ctrl), peers: peer.New(nil, nil), gc: NewMockGC(ctrl),
		pe: NewMockPieceErrors(ctrl), preheats: NewMockPreheats(ctrl), mx: metrics.New()}
	var log *logrus.Logger
	log, f.logs = logtest.NewNullLogger()
	d := Deps{Tasks: f.tasks, Pulls: f.pulls, Peers: f.peers, GC: f.gc, PieceErrors: f.pe,
		Preheats: f.preheats, Metrics: f.mx, Log: log}
	for _, o := range opts {
		o(&d)
	}
	f.srv = httptest.NewServer(NewAPI(d))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSuffix(string(b), "\n")
}

func TestRegisterShapes(t *testing.T) {
	f := newFixture(t)
	f.tasks.EXPECT().Register(gomock.Any()).DoAndReturn(func(p task.RegisterParams) (types.RegisterResponseData, error) {
		if p.Req.RawURL != "http://o/f" || p.Req.CID != "c1" || p.Req.Port != 15001 || !p.Req.StreamMode || p.Req.WindowSize != 4 ||
			len(p.Req.Headers) != 1 || p.RemoteIP != "127.0.0.1" || p.Req.PieceDigest != "blake3" {
			t.Errorf("decoded %+v", p)
		}
		return types.RegisterResponseData{TaskID: "tid", FileLength: 10, PieceSize: 4194304, CDNSource: "supernode"}, nil
	})
	st, body := f.do(t, "POST", "/peer/registry", "application/json;charset=utf-8",
		`{"rawUrl":"http://o/f","cid":"c1","port":15001,"path":"/peer/file/x","headers":["a: b"],"streamMode":true,"windowSize":4,"pieceDigest":"blake3"}`)
	want := `{"code":200,"msg":"success","data":{"taskId":"tid","fileLength":10,"pieceSize":4194304,"cdnSource":"supernode","asSeed":false,"seedTaskID":""}}`
	if st != 200 || body != want {
		t.Fatalf("HTTP %d %s\nwant %s", st, body, want)
	}
	// Form bodies, as v1 accepts them.
	f.tasks.EXPECT().Register(gomock.Any()).DoAndReturn(func(p task.RegisterParams) (types.RegisterResponseData, error) {
		if p.Req.RawURL != "http://o/f" || p.Req.Port != 15002 || p.Req.PieceDigest != "BLAKE3" {
			t.Errorf("form decoded %+v", p.Req)
		}
		return types.RegisterResponseData{}, &task.Error{Code: types.CodeURLNotReachable, Err: io.EOF}
	})
	st, body = f.do(t, "POST", "/peer/registry", "application/x-www-form-urlencoded", "rawUrl=http%3A%2F%2Fo%2Ff&cid=c&port=15002&pieceDigest=BLAKE3")
	if st != 500 || body != `{"code":607,"message":"EOF"}` {
		t.Fatalf("form register failure: HTTP %d %s", st, body)
	}
	for _, bad := range []string{`{`, `[]`, `{"port":"x"}`, `{} {}`} {
		if st, body := f.do(t, "POST", "/peer/registry", "application/json", bad); st != 500 || !strings.HasPrefix(body, `{"code":501,"message":"invalid register body`) {
			t.Errorf("body %q: HTTP %d %s", bad, st, body)
		}
	}
}

func TestPeerTaskShapes(t *testing.T) {
	f := newFixture(t)
	pi := types.PieceInfo{Range: "0-4194303", PieceNum: 0, PieceSize: 4194304, PieceMd5: "abc:4194304", CID: "cdnnode:1.2.3.4~t",
		PeerIP: "1.2.3.4", PeerPort: 8001, Path: "/download/t/t"}
	cases := []struct {
		name  string
		query string
		res   pull.Result
		err   error
		want  string
	}{
		{"continue", "taskId=t&srcCid=c&status=700&result=502", pull.Result{Code: 601, Pieces: []types.PieceInfo{pi}}, nil,
			`{"code":601,"msg":"peer task go on","data":[{"range":"0-4194303","pieceNum":0,"pieceSize":4194304,"pieceMd5":"abc:4194304","cid":"cdnnode:1.2.3.4~t","peerIp":"1.2.3.4","peerPort":8001,"path":"/download/t/t","downLink":0}]}`},
		{"finish", "taskId=t&srcCid=c&status=701&result=503&range=0-9&dstCid=d", pull.Result{Code: 600, Finish: &types.FinishData{Md5: "m", FileLength: 15}}, nil,
			`{"code":600,"msg":"peer task end","data":{"md5":"m","fileLength":15}}`},
		{"wait", "taskId=t&srcCid=c&status=700", pull.Result{Code: 602}, nil, `{"code":602,"msg":"peer task wait"}`},
		{"limited", "taskId=t&srcCid=c&status=700", pull.Result{Code: 601}, nil, `{"code":601,"msg":"peer task go on"}`},
		{"not found", "taskId=t&srcCid=c&status=700", pull.Result{}, &task.Error{Code: 502, Err: io.EOF}, `{"code":502,"msg":"EOF"}`},
		{"cdn failed", "taskId=t&srcCid=c&status=700", pull.Result{}, io.ErrUnexpectedEOF, `{"code":500,"msg":"unexpected EOF"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.pulls.EXPECT().Pull(gomock.Any(), gomock.Any()).Return(tc.res, tc.err)
			if st, body := f.do(t, "GET", "/peer/task?"+tc.query, "", ""); st != 200 || body != tc.want {
				t.Fatalf("HTTP %d %s\nwant %s", st, body, tc.want)
			}
		})
	}
	for _, q := range []string{"", "taskId=t", "taskId=t&srcCid=c", "taskId=t&srcCid=c&status=x", "taskId=t&srcCid=c&status=701&result=501",
		"taskId=t&srcCid=c&status=700&result=zz", "taskId=%zz"} {
		if st, body := f.do(t, "GET", "/peer/task?"+q, "", ""); st != 200 || !strings.HasPrefix(body, `{"code":501,"msg":`) {
			t.Errorf("query %q: HTTP %d %s", q, st, body)
		}
	}
}

// The time a /peer/task call was held as a long-poll reaches the client
// as Server-Timing, so it can tell waiting from processing; a call that
// was not held has no such header.
func TestPullHoldTime(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		held time.Duration
		want string
	}{
		{1500 * time.Microsecond, "hold;dur=1.5"},
		{0, ""},
	} {
		f.pulls.EXPECT().Pull(gomock.Any(), gomock.Any()).Return(pull.Result{Code: 602, Held: tc.held}, nil)
		resp, err := http.Get(f.srv.URL + "/peer/task?taskId=t&srcCid=c&status=700")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Server-Timing"); got != tc.want {
			t.Errorf("held %v: Server-Timing %q, want %q", tc.held, got, tc.want)
		}
	}
}

func TestPieceReportsAndStream(t *testing.T) {
	f := newFixture(t)
	f.tasks.EXPECT().PieceSuccess(task.PieceReport{TaskID: "t", CID: "c", DstCID: "d", Range: "0-9", From: loopback}).Return(nil)
	if st, body := f.do(t, "GET", "/peer/piece/suc?taskId=t&cid=c&dstCid=d&pieceRange=0-9", "", ""); st != 200 || body != `{"code":611}` {
		t.Fatalf("suc: %d %s", st, body)
	}
	// share=0 (a stream told noShare): had, not a holder; anything but 0
	// or 1 is refused.
	f.tasks.EXPECT().PieceSuccess(task.PieceReport{TaskID: "t", CID: "c", DstCID: "d", Range: "0-9", NoShare: true, From: loopback}).Return(nil)
	if st, body := f.do(t, "GET", "/peer/piece/suc?taskId=t&cid=c&dstCid=d&pieceRange=0-9&share=0", "", ""); st != 200 || body != `{"code":611}` {
		t.Fatalf("suc share=0: %d %s", st, body)
	}
	if st, body := f.do(t, "GET", "/peer/piece/suc?taskId=t&cid=c&dstCid=d&pieceRange=0-9&share=no", "", ""); st != 500 ||
		!strings.Contains(body, `share \"no\"`) {
		t.Fatalf("suc share=no: %d %s", st, body)
	}
	f.tasks.EXPECT().StreamPiece(task.PieceReport{TaskID: "t", CID: "c", Range: "0-9", From: loopback}, true).Return(nil)
	if st, body := f.do(t, "POST", "/peer/piece/stream?taskId=t&cid=c&pieceRange=0-9", "", ""); st != 200 || body != `{"code":611}` {
		t.Fatalf("stream post: %d %s", st, body)
	}
	f.tasks.EXPECT().StreamPiece(task.PieceReport{TaskID: "t", CID: "c", Range: "0-9", From: loopback}, false).Return(&task.Error{Code: 502, Err: io.EOF})
	if st, body := f.do(t, "DELETE", "/peer/piece/stream?taskId=t&cid=c&pieceRange=0-9", "", ""); st != 200 || body != `{"code":502,"msg":"EOF"}` {
		t.Fatalf("stream delete unknown: %d %s", st, body)
	}
	if st, body := f.do(t, "DELETE", "/peer/piece/stream?taskId=t&cid=c", "", ""); st != 200 || body != `{"code":501,"msg":"pieceRange is empty"}` {
		t.Fatalf("stream delete without range: %d %s", st, body)
	}
	f.tasks.EXPECT().ServiceDown("t", "c", loopback).Return(nil)
	if st, body := f.do(t, "GET", "/peer/service/down?taskId=t&cid=c", "", ""); st != 200 || body != `{"code":612}` {
		t.Fatalf("service down: %d %s", st, body)
	}
	// Failures are HTTP 500 {"code":500}, as v1: a v1 dfget would take an
	// HTTP 200 with another code for an acknowledged report.
	f.tasks.EXPECT().PieceSuccess(gomock.Any()).Return(&task.Error{Code: 502, Err: errors.New("task x not found")})
	if st, body := f.do(t, "GET", "/peer/piece/suc?taskId=x&cid=c&dstCid=d&pieceRange=0-9", "", ""); st != 500 ||
		body != `{"code":500,"message":"task x not found"}` {
		t.Fatalf("suc for an unknown task: %d %s", st, body)
	}
	if st, body := f.do(t, "GET", "/peer/piece/suc?taskId=x&cid=c", "", ""); st != 500 || !strings.HasPrefix(body, `{"code":500,`) {
		t.Fatalf("suc without range: %d %s", st, body)
	}
	f.tasks.EXPECT().ServiceDown("x", "c", loopback).Return(&task.Error{Code: 502, Err: errors.New("task x not found")})
	if st, body := f.do(t, "GET", "/peer/service/down?taskId=x&cid=c", "", ""); st != 500 ||
		body != `{"code":500,"message":"task x not found"}` {
		t.Fatalf("service down for an unknown task: %d %s", st, body)
	}
	if st, body := f.do(t, "GET", "/peer/service/down?taskId=x", "", ""); st != 500 || !strings.HasPrefix(body, `{"code":500,`) {
		t.Fatalf("service down without cid: %d %s", st, body)
	}
	f.tasks.EXPECT().DstPeer("t", "d").Return("pid")
	f.pe.EXPECT().Report(types.PieceErrorRequest{TaskID: "t", SrcCid: "c", DstPid: "pid", ErrorType: "FILE_NOT_EXIST"}, loopback).Return(nil)
	if st, body := f.do(t, "GET", "/peer/piece/error?taskId=t&srcCid=c&dstCid=d&errorType=FILE_NOT_EXIST", "", ""); st != 200 || body != "" {
		t.Fatalf("piece error: %d %q", st, body)
	}
}

func TestSystemAndRESTRoutes(t *testing.T) {
	f := newFixture(t)
	if st, body := f.do(t, "GET", "/_ping", "", ""); st != 200 || body != "OK" {
		t.Fatalf("ping: %d %q", st, body)
	}
	if st, body := f.do(t, "GET", "/v1.24/_ping", "", ""); st != 200 || body != "OK" {
		t.Fatalf("versioned ping: %d %q", st, body)
	}
	if st, body := f.do(t, "GET", "/version", "", ""); st != 200 || !strings.Contains(body, `"GoVersion"`) {
		t.Fatalf("version: %d %s", st, body)
	}
	if st, body := f.do(t, "POST", "/peer/heartbeat", "", ""); st != 200 || body != `{"seedTaskIDs":null}` {
		t.Fatalf("heartbeat: %d %s", st, body)
	}
	if st, body := f.do(t, "POST", "/api/v1/peer/network", "", ""); st != 200 || body != `{"nodes":null}` {
		t.Fatalf("network: %d %s", st, body)
	}
	if st, body := f.do(t, "GET", "/api/v1/", "", ""); st != 200 || !strings.HasPrefix(body, `{"api":[{"method":"POST","path":"/api/v1/peers"}`) ||
		!strings.Contains(body, `"category":"v1","prefix":"/api/v1"`) {
		t.Fatalf("v1 list: %d %s", st, body)
	}
	if st, body := f.do(t, "GET", "/api/ext/", "", ""); st != 200 || body != `{"api":[],"category":"extension","prefix":"/api/ext"}` {
		t.Fatalf("ext list: %d %s", st, body)
	}
	f.tasks.EXPECT().Info("nope").Return(types.TaskInfo{}, &task.Error{Code: 502, Err: io.EOF})
	if st, body := f.do(t, "GET", "/api/v1/tasks/nope", "", ""); st != 500 || body != `{"code":500,"message":"EOF"}` {
		t.Fatalf("unknown task: %d %s", st, body)
	}
	f.gc.EXPECT().GCTask("x", true)
	if st, _ := f.do(t, "DELETE", "/api/v1/tasks/x?full=true", "", ""); st != 200 {
		t.Fatalf("delete task: %d", st)
	}
	var created struct{ ID string }
	if st, body := f.do(t, "POST", "/api/v1/peers", "application/json", `{"IP":"1.2.3.4","hostName":"h","port":15000}`); st != 201 ||
		json.Unmarshal([]byte(body), &created) != nil || body != `{"ID":"`+created.ID+`"}` {
		t.Fatalf("create peer: %d %s", st, body)
	}
	if p, err := f.peers.Get(created.ID); err != nil || p.IP != "1.2.3.4" || p.HostName != "h" || p.Port != 15000 {
		t.Fatalf("created peer %+v %v", p, err)
	}
	long := strings.Repeat("h", 2<<10)
	if st, body := f.do(t, "POST", "/api/v1/peers", "application/json", `{"IP":"1.2.3.4","hostName":"`+long+`","port":15000}`); st != 400 ||
		body != `{"code":501,"message":"hostName is 2048 bytes: the limit is 1024"}` {
		t.Fatalf("long host name: %d %s", st, body)
	}
	if st, body := f.do(t, "GET", "/peer/piece/error?taskId=t&srcCid=c&dstCid=d&errorType=x&realMd5="+long, "", ""); st != 200 ||
		!strings.Contains(body, "realMd5 is 2048 bytes") {
		t.Fatalf("long piece error field: %d %s", st, body)
	}
	f.preheats.EXPECT().Get("p").Return(types.PreheatInfo{}, io.EOF)
	if st, body := f.do(t, "GET", "/preheats/p", "", ""); st != 404 || body != `{"code":404,"message":"p doesn't exists"}` {
		t.Fatalf("preheat 404: %d %s", st, body)
	}
	f.preheats.EXPECT().Create(gomock.Any()).Return("id", true, nil)
	if st, body := f.do(t, "POST", "/api/v1/preheats", "", `{"type":"file","url":"http://x/y"}`); st != 208 ||
		body != `{"code":208,"message":"preheat task already exists, id:id"}` {
		t.Fatalf("existing preheat: %d %s", st, body)
	}
	f.preheats.EXPECT().Delete("unknown").Return(false)
	if st, body := f.do(t, "DELETE", "/api/v1/preheats/unknown", "", ""); st != 200 || body != "true" {
		t.Fatalf("delete unknown preheat: %d %s", st, body)
	}
	if st, _ := f.do(t, "GET", "/no/such/route", "", ""); st != 404 {
		t.Fatalf("unknown route: %d", st)
	}
	if st, body := f.do(t, "POST", "/task/metrics", "", `{"IP":"1.2.3.4","success":true,"duration":1.5,"fileLength":10}`); st != 200 || body != "null" {
		t.Fatalf("task metrics: %d %s", st, body)
	}
}

// The hot routes answer the same through the exact-path table as through
// the router (versioned alias), with a Content-Length and never chunked,
// and are counted under their handler label.
func TestExactRoutesAndMetrics(t *testing.T) {
	f := newFixture(t)
	pis := make([]types.PieceInfo, 40) // ~5 KB: past net/http's 2 KB chunking buffer
	for i := range pis {
		pis[i] = types.PieceInfo{Range: "0-4194303", PieceNum: i, PieceSize: 4194304, CID: "cdnnode:1.2.3.4~t", Path: "/download/t/t"}
	}
	f.pulls.EXPECT().Pull(gomock.Any(), gomock.Any()).Return(pull.Result{Code: 601, Pieces: pis}, nil).Times(2)
	var bodies []string
	for _, p := range []string{"/peer/task", "/v1.0/peer/task"} {
		resp, err := http.Get(f.srv.URL + p + "?taskId=t&srcCid=c&status=700")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 || resp.ContentLength != int64(len(b)) ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: HTTP %d, transfer encoding %v, length %d for %d bytes, type %q", p, resp.StatusCode,
				resp.TransferEncoding, resp.ContentLength, len(b), resp.Header.Get("Content-Type"))
		}
		bodies = append(bodies, string(b))
	}
	if bodies[0] != bodies[1] || !strings.HasPrefix(bodies[0], `{"code":601,"msg":"peer task go on","data":[{`) || !strings.HasSuffix(bodies[0], "}]}\n") {
		t.Errorf("answers differ or are malformed:\n%s\n%s", bodies[0], bodies[1])
	}
	if st, body := f.do(t, "POST", "/peer/task?taskId=t", "", ""); st != http.StatusMethodNotAllowed || body != `{"code":405,"message":"method not allowed"}` {
		t.Errorf("wrong method: %d %s", st, body)
	}
	if st, body := f.do(t, "GET", "/peer/task?taskId=t", "", ""); st != 200 || body != `{"code":501,"msg":"srcCid is empty"}` {
		t.Errorf("bad query: %d %s", st, body)
	}
	_, text := f.do(t, "GET", "/metrics", "", "")
	for _, want := range []string{
		`dragonfly_supernode_http_requests_total{code="200",handler="/peer/task"} 3`,
		`dragonfly_supernode_http_request_duration_seconds_count{handler="/peer/task"} 3`,
		`dragonfly_supernode_http_response_size_bytes_count{handler="/peer/task"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, `handler="/peer/piece/suc"`) {
		t.Error("a route never called has series")
	}
}

// GET /preheats answers v1's internal PreheatTask structs: Go field names,
// Unix milliseconds; a full record pool answers 503 in v1's error shape.
func TestPreheatListShapeAndFull(t *testing.T) {
	f := newFixture(t)
	f.preheats.EXPECT().List().Return([]types.PreheatTask{{
		ID: "p", URL: "http://o/v2/a/manifests/1", Type: "image", Headers: map[string]string{"Authorization": "xxxxx"},
		Children: []string{"c"}, Status: "SUCCESS", StartTime: 1767323045006, FinishTime: 1767323046506,
	}, {ID: "c", URL: "http://o/v2/a/blobs/sha256:aa", Type: "file", ParentID: "p", Status: "RUNNING", StartTime: 1767323045100}}).Times(2)
	want := `[{"ID":"p","URL":"http://o/v2/a/manifests/1","Type":"image","Filter":"","Identifier":"",` +
		`"Headers":{"Authorization":"xxxxx"},"ParentID":"","Children":["c"],"Status":"SUCCESS",` +
		`"StartTime":1767323045006,"FinishTime":1767323046506,"ErrorMsg":""},` +
		`{"ID":"c","URL":"http://o/v2/a/blobs/sha256:aa","Type":"file","Filter":"","Identifier":"","Headers":null,` +
		`"ParentID":"p","Children":null,"Status":"RUNNING","StartTime":1767323045100,"FinishTime":0,"ErrorMsg":""}]`
	for _, path := range []string{"/preheats", "/api/v1/preheats"} {
		if st, body := f.do(t, "GET", path, "", ""); st != 200 || body != want {
			t.Fatalf("GET %s: %d\n got %s\nwant %s", path, st, body, want)
		}
	}
	f.preheats.EXPECT().Create(gomock.Any()).Return("", false, fmt.Errorf("%w (2, the limit is 2)", preheat.ErrFull))
	if st, body := f.do(t, "POST", "/preheats", "", `{"type":"file","url":"http://x/y"}`); st != 503 ||
		body != `{"code":503,"message":"too many preheat records held (2, the limit is 2)"}` {
		t.Fatalf("full: %d %s", st, body)
	}
}

// In the source CDN pattern a preheat with a suffix Range is refused when it
// is made, as a registration of it is (with v1's preheat error shape), not
// accepted with 201 to fail when it runs; a start-end Range is accepted. In
// the supernode pattern the suffix range is accepted as a registration's is.
func TestPreheatSuffixRangeRefused(t *testing.T) {
	body := func(rg string) string {
		return `{"type":"file","url":"http://x/y","headers":{"range":"` + rg + `"}}`
	}
	src := newFixture(t, func(d *Deps) { d.SourcePattern = true })
	for _, path := range []string{"/preheats", "/api/v1/preheats"} {
		st, got := src.do(t, "POST", path, "", body("bytes=-100"))
		if st != 400 || !strings.HasPrefix(got, `{"code":400,"message":"Range header \"bytes=-100\" is a suffix range`) {
			t.Errorf("POST %s, suffix range, source pattern: %d %s", path, st, got)
		}
		src.preheats.EXPECT().Create(gomock.Any()).Return("id", false, nil)
		if st, got := src.do(t, "POST", path, "", body("bytes=100-")); st != 201 {
			t.Errorf("POST %s, bytes=100-, source pattern: %d %s", path, st, got)
		}
	}
	sn := newFixture(t)
	sn.preheats.EXPECT().Create(gomock.Any()).Return("id", false, nil)
	if st, got := sn.do(t, "POST", "/preheats", "", body("bytes=-100")); st != 201 {
		t.Errorf("suffix range, supernode pattern: %d %s", st, got)
	}
}

// A v1 client's registration whose header line is no single valid field
// is refused with v1's bad-request result (HTTP 500, code 501) before the
// task manager sees it (the mock expects no Register for those).
func TestRegisterRefusesBadHeaderFields(t *testing.T) {
	f := newFixture(t)
	for _, h := range []string{"Bad Name:x", ":x", "X:\r\ny", "X: a\u0000", "nocolon"} {
		hj, _ := json.Marshal([]string{"X-Good: 1", h})
		st, body := f.do(t, "POST", "/peer/registry", "application/json",
			`{"rawUrl":"http://o/f","cid":"c1","port":15001,"path":"/peer/file/x","headers":`+string(hj)+`}`)
		if st != 500 || !strings.HasPrefix(body, `{"code":501,"message":"header 1: invalid header`) {
			t.Errorf("header %q: HTTP %d %s", h, st, body)
		}
	}
	f.tasks.EXPECT().Register(gomock.Any()).Return(types.RegisterResponseData{TaskID: "tid"}, nil)
	if st, body := f.do(t, "POST", "/peer/registry", "application/json",
		`{"rawUrl":"http://o/f","cid":"c1","port":15001,"path":"/peer/file/x","headers":["X-A: b c","Authorization: Bearer a=b:c"]}`); st != 200 {
		t.Errorf("good headers: HTTP %d %s", st, body)
	}
}
