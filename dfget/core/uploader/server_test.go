package uploader

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

const testPieceSize = 1 << 20 // a small wrapped piece size for tests

// testToken is the local token of test servers; do sends it unless the
// headers name one.
const testToken = "test-local-token"

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func newTestServer(t *testing.T) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: dir, ExpireTime: time.Minute, AliveTime: time.Minute}, quietLog())
	return s, dir
}

func do(t *testing.T, h http.Handler, method, target, remote string, hdr map[string]string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	r.RemoteAddr = remote
	r.Header.Set(api.HeaderLocalToken, testToken)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func pieceHeaders(num int, wrappedLen int64) map[string]string {
	return map[string]string{
		"Range":     "bytes=" + piece.Range(num, testPieceSize, wrappedLen),
		"pieceNum":  strconv.Itoa(num),
		"pieceSize": strconv.Itoa(testPieceSize),
	}
}

func TestServePieces(t *testing.T) {
	s, dir := newTestServer(t)
	h := s.Handler()
	content := bytes.Repeat([]byte("0123456789abcdef"), (2*testPieceSize+1000)/16)
	if err := os.WriteFile(filepath.Join(dir, "task-1"+ServiceSuffix), content, 0o644); err != nil {
		t.Fatal(err)
	}
	wrappedLen := piece.WrappedLength(int64(len(content)), testPieceSize)
	if w := do(t, h, "GET", "/peer/file/task-1", "10.0.0.9:1234", pieceHeaders(0, wrappedLen), nil); w.Code != 404 {
		t.Fatalf("unregistered task served: %d", w.Code)
	}
	if w := do(t, h, "GET", "/check/task-1", "127.0.0.1:999", map[string]string{"dataDir": dir}, nil); w.Code != 200 {
		t.Fatalf("check: %d %s", w.Code, w.Body)
	}
	for num := 0; num < piece.Count(int64(len(content)), testPieceSize); num++ {
		w := do(t, h, "GET", "/peer/file/task-1", "10.0.0.9:1234", pieceHeaders(num, wrappedLen), nil)
		off := piece.ContentOffset(num, testPieceSize)
		want := piece.Wrap(nil, content[off:off+piece.ContentLength(num, int64(len(content)), testPieceSize)], testPieceSize)
		if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), want) {
			t.Fatalf("piece %d: %d, %d bytes, want %d", num, w.Code, w.Body.Len(), len(want))
		}
	}
	hdr := pieceHeaders(9, -1)
	if w := do(t, h, "GET", "/peer/file/task-1", "10.0.0.9:1234", hdr, nil); w.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("piece past the end: %d", w.Code)
	}
	hdr["pieceNum"] = "1"
	if w := do(t, h, "GET", "/peer/file/task-1", "10.0.0.9:1234", hdr, nil); w.Code != http.StatusBadRequest {
		t.Errorf("range not starting its piece: %d", w.Code)
	}
}

func TestRefusesOtherFiles(t *testing.T) {
	s, dir := newTestServer(t)
	h := s.Handler()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link"+ServiceSuffix)); err != nil {
		t.Fatal(err)
	}
	do(t, h, "GET", "/check/link", "127.0.0.1:1", nil, nil)
	for _, target := range []string{"/peer/file/link", "/peer/file/..%2Fsecret", "/peer/file/%2Fetc%2Fpasswd", "/peer/file/.."} {
		if w := do(t, h, "GET", target, "10.0.0.9:1", pieceHeaders(0, -1), nil); w.Code/100 == 2 {
			t.Errorf("%s served: %d", target, w.Code)
		}
	}
	if w := do(t, h, "GET", "/check/x", "10.0.0.9:1", nil, nil); w.Code != http.StatusForbidden {
		t.Errorf("remote /check/: %d", w.Code)
	}
	if w := do(t, h, "GET", "/check/x", "127.0.0.1:1", map[string]string{"dataDir": "/etc"}, nil); w.Code != http.StatusBadRequest {
		t.Errorf("/check/ with another dataDir: %d", w.Code)
	}
}

// A pieceNum so large that pieceNum x pieceSize wraps is refused before
// anything is sent; it made a negative offset in the file, found only
// after the 206 and its headers were out.
func TestPieceNumPastAnyFileRefused(t *testing.T) {
	s, dir := newTestServer(t)
	h := s.Handler()
	if err := os.WriteFile(filepath.Join(dir, "f"+ServiceSuffix), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	do(t, h, "GET", "/check/f", "127.0.0.1:1", map[string]string{"dataDir": dir}, nil)
	w := do(t, h, "GET", "/peer/file/f", "10.0.0.9:1", map[string]string{"Range": "bytes=0-99",
		"pieceNum": strconv.Itoa(1 << 38), "pieceSize": strconv.Itoa(1 << 26)}, nil)
	if w.Code != http.StatusBadRequest {
		t.Errorf("pieceNum 2^38 of 2^26-byte pieces: %d %q, want 400", w.Code, w.Body)
	}
}

func TestFairShare(t *testing.T) {
	for _, tc := range []struct{ req, total, sum, want int64 }{
		{10, 0, 10, 10}, {10, 100, 30, 10}, {50, 100, 200, 25}, {1, 3, 4, 1}, {200, 100, 200, 100},
	} {
		if got := FairShare(tc.req, tc.total, tc.sum); got != tc.want {
			t.Errorf("FairShare(%d,%d,%d) = %d, want %d", tc.req, tc.total, tc.sum, got, tc.want)
		}
	}
}

func TestRateEndpoint(t *testing.T) {
	s, dir := newTestServer(t)
	h := s.Handler()
	for _, n := range []string{"a", "b"} {
		do(t, h, "GET", "/check/"+n, "127.0.0.1:1", map[string]string{"dataDir": dir, "totalLimit": "1000"}, nil)
	}
	do(t, h, "GET", "/rate/a", "127.0.0.1:1", map[string]string{"rateLimit": "1000"}, nil)
	w := do(t, h, "GET", "/rate/b", "127.0.0.1:1", map[string]string{"rateLimit": "1000"}, nil)
	if w.Code != 200 || w.Body.String() != "500" {
		t.Fatalf("fair share of two: %d %q", w.Code, w.Body)
	}
	if w := do(t, h, "GET", "/rate/b", "127.0.0.1:1", map[string]string{"rateLimit": "x"}, nil); w.Code != 400 {
		t.Fatalf("bad rateLimit: %d", w.Code)
	}
}

// fakeSupernode records /peer/piece/stream calls.
type fakeSupernode struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeSupernode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Query().Get("pieceRange"))
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(types.ResultInfo{Code: types.CodeGetPieceReport})
}

func (f *fakeSupernode) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func TestStreamCacheEvictsFIFOAndReports(t *testing.T) {
	fs := &fakeSupernode{}
	sn := httptest.NewServer(fs)
	defer sn.Close()
	s, _ := newTestServer(t)
	h := s.Handler()
	node := sn.Listener.Addr().String()
	w := do(t, h, "POST", "/stream/task", "127.0.0.1:1", map[string]string{"taskFileName": "st", "taskID": "T",
		"cid": "C", "superNode": node, "pieceSize": strconv.Itoa(testPieceSize), "windowSize": "2"}, nil)
	if w.Code != 200 {
		t.Fatalf("stream task: %d %s", w.Code, w.Body)
	}
	wrapped := make([][]byte, 3)
	for i := range wrapped {
		wrapped[i] = piece.Wrap(nil, bytes.Repeat([]byte{byte(i)}, 1000), testPieceSize)
		w := do(t, h, "POST", "/stream/piece", "127.0.0.1:1", map[string]string{"taskFileName": "st",
			"pieceNum": strconv.Itoa(i), "pieceSize": strconv.Itoa(testPieceSize)}, wrapped[i])
		if w.Code != 200 {
			t.Fatalf("push %d: %d %s", i, w.Code, w.Body)
		}
	}
	if w := do(t, h, "GET", "/peer/file/st", "10.0.0.9:1", pieceHeaders(0, -1), nil); w.Code != 404 {
		t.Errorf("evicted piece 0 served: %d", w.Code)
	}
	if w := do(t, h, "GET", "/peer/file/st", "10.0.0.9:1", pieceHeaders(2, -1), nil); w.Code != 206 || !bytes.Equal(w.Body.Bytes(), wrapped[2]) {
		t.Errorf("cached piece 2: %d", w.Code)
	}
	bad := append([]byte(nil), wrapped[0]...)
	bad[len(bad)-1] = 0
	if w := do(t, h, "POST", "/stream/piece", "127.0.0.1:1", map[string]string{"taskFileName": "st", "pieceNum": "5",
		"pieceSize": strconv.Itoa(testPieceSize)}, bad); w.Code != 400 {
		t.Errorf("malformed piece accepted: %d", w.Code)
	}
	do(t, h, "DELETE", "/stream/task", "127.0.0.1:1", map[string]string{"taskFileName": "st"}, nil)
	r := func(n int) string { return piece.Range(n, testPieceSize, -1) }
	want := []string{"POST " + r(0), "POST " + r(1), "DELETE " + r(0), "POST " + r(2), "DELETE " + r(1), "DELETE " + r(2)}
	// A piece evicted before its "cached" report went out is never
	// reported at all (noteQueue.push), so which pieces appear depends on
	// the notifier's pace; the order and the pairs do not.
	got := fs.snapshot()
	if !withPairsRemoved(want, got) {
		t.Fatalf("supernode calls %v, want %v with some pieces' two calls left out", got, want)
	}
}

// withPairsRemoved reports whether got is want with the POST and DELETE of
// some pieces removed, the rest in want's order.
func withPairsRemoved(want, got []string) bool {
	kept := map[string]bool{}
	for _, c := range got {
		kept[strings.Fields(c)[1]] = true
	}
	var w []string
	for _, c := range want {
		if kept[strings.Fields(c)[1]] {
			w = append(w, c)
		}
	}
	return slices.Equal(w, got)
}

func TestNoteQueueCancelsAnUnsentCachedNote(t *testing.T) {
	q := newNoteQueue()
	q.push(streamNote{num: 1, cached: true})
	q.push(streamNote{num: 2, cached: true})
	q.push(streamNote{num: 1}) // 1 was never reported: both notes go
	if n, _ := q.next(); n != (streamNote{num: 2, cached: true}) {
		t.Fatalf("first note %+v, want piece 2 cached", n)
	}
	q.push(streamNote{num: 2}) // 2 was reported: its eviction must be too
	q.push(streamNote{num: 3, cached: true})
	q.close()
	var rest []streamNote
	for n, ok := q.next(); ok; n, ok = q.next() {
		rest = append(rest, n)
	}
	if want := []streamNote{{num: 2}, {num: 3, cached: true}}; !slices.Equal(rest, want) {
		t.Fatalf("notes %+v, want %+v", rest, want)
	}
}

func TestIdleExitResetsMeta(t *testing.T) {
	dir := t.TempDir()
	meta := filepath.Join(dir, "meta", "host.meta")
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: filepath.Join(dir, "data"), MetaPath: meta,
		ExpireTime: time.Minute, AliveTime: 500 * time.Millisecond}, quietLog())
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Run(ctx, l, &out); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("server did not exit when idle")
	}
	if !bytes.Contains(out.Bytes(), []byte("dfget uploader server port is ")) {
		t.Errorf("startup line: %q", out.String())
	}
	if ReadMeta(meta).ServicePort != 0 {
		t.Error("meta port not reset at exit")
	}
}

// FuzzPieceRequest: any Range/pieceNum/pieceSize headers parse or fail
// cleanly; an accepted request names a non-negative span inside one piece:
// a wrapped one starts where piece pieceNum's content does and is no
// longer than a piece's content.
func FuzzPieceRequest(f *testing.F) {
	f.Add("bytes=0-4194303", "0", "4194304", "")
	f.Add("bytes=4194304-8388607", "1", "4194304", "")
	f.Add("bytes=100-50", "0", "4194304", "source")
	f.Add("bytes=-1", "x", "5", "")
	// end - start + 1 is past int64.
	f.Add("bytes=0-9223372036854775807", "0", "4194304", "source")
	// pieceNum x pieceSize is 2^64: it wraps to 0, the range's start.
	f.Add("bytes=0-99", "274877906944", "67108864", "")
	f.Fuzz(func(t *testing.T, rg, num, size, src string) {
		h := http.Header{}
		h.Set("Range", rg)
		h.Set("pieceNum", num)
		h.Set("pieceSize", size)
		h.Set("cdnSource", src)
		p, err := parsePieceRequest(h)
		if err != nil {
			return
		}
		if p.start < 0 || p.length < 0 || p.length > int64(p.pieceSize) || p.num < 0 || p.start > math.MaxInt64-p.length {
			t.Fatalf("%q %q %q: accepted %+v", rg, num, size, p)
		}
		content := int64(p.pieceSize) - piece.WrapSize
		if p.wrapped && (p.start/content != int64(p.num) || p.start%content != 0 || p.length > content) {
			t.Fatalf("%q %q %q: accepted %+v, not the content of piece %d", rg, num, size, p, p.num)
		}
	})
}

// A finished task's file goes --expiretime after its last access, with a
// service-down report to its supernode; unfinished tasks stay.
func TestGCExpiresFinishedTasks(t *testing.T) {
	var downs []string
	var mu sync.Mutex
	sn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		downs = append(downs, r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(types.ResultInfo{Code: types.CodeGetPeerDown})
	}))
	defer sn.Close()
	s, dir := newTestServer(t)
	s.cfg.ExpireTime = 50 * time.Millisecond
	h := s.Handler()
	for _, n := range []string{"done", "running"} {
		if err := os.WriteFile(filepath.Join(dir, n+ServiceSuffix), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
		do(t, h, "GET", "/check/"+n, "127.0.0.1:1", nil, nil)
	}
	q := "taskFileName=done&taskID=T1&cid=C1&superNode=" + sn.Listener.Addr().String()
	if w := do(t, h, "GET", "/client/finish?"+q, "127.0.0.1:1", nil, nil); w.Code != 200 {
		t.Fatalf("finish: %d", w.Code)
	}
	if w := do(t, h, "GET", "/client/finish?taskFileName=x", "127.0.0.1:1", nil, nil); w.Code != 400 {
		t.Fatalf("finish without ids: %d", w.Code)
	}
	time.Sleep(100 * time.Millisecond)
	s.gc(context.Background(), false)
	if _, err := os.Stat(filepath.Join(dir, "done"+ServiceSuffix)); !os.IsNotExist(err) {
		t.Error("expired file kept")
	}
	if _, err := os.Stat(filepath.Join(dir, "running"+ServiceSuffix)); err != nil {
		t.Error("unfinished task's file removed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(downs) != 1 || downs[0] != "/peer/service/down?cid=C1&taskId=T1" {
		t.Fatalf("service-down calls: %v", downs)
	}
}

// FuzzPeerServerPath: whatever the path and piece headers, a remote caller
// gets piece bytes only for the registered task file, and the server never
// panics.
func FuzzPeerServerPath(f *testing.F) {
	f.Add("/peer/file/t", "bytes=0-99", "0", "4194304")
	f.Add("/peer/file/..%2Ft", "bytes=0-99", "0", "4194304")
	f.Add("/peer/file/secret", "bytes=0-99", "0", "4194304")
	f.Add("/check/t", "", "", "")
	f.Add("/peer/file/t/../secret", "bytes=0-5", "0", "100")
	dir := f.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "t"+ServiceSuffix), bytes.Repeat([]byte("x"), 1000), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "secret"+ServiceSuffix), []byte("secret"), 0o644)
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: dir, ExpireTime: time.Minute, AliveTime: time.Minute}, quietLog())
	h := s.Handler()
	reg := httptest.NewRequest("GET", "/check/t", nil)
	reg.RemoteAddr = "127.0.0.1:1"
	h.ServeHTTP(httptest.NewRecorder(), reg)
	f.Fuzz(func(t *testing.T, path, rg, num, size string) {
		r, err := http.NewRequest("GET", "http://x"+path, nil)
		if err != nil || r.URL.Path == "" {
			return
		}
		r.RemoteAddr = "10.1.2.3:4"
		r.Header.Set("Range", rg)
		r.Header.Set("pieceNum", num)
		r.Header.Set("pieceSize", size)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code/100 == 2 && r.URL.Path != "/peer/file/t" && r.URL.Path != "/server/ping" {
			t.Fatalf("%q served %d: %q", path, w.Code, w.Body.String())
		}
		if bytes.Contains(w.Body.Bytes(), []byte("secret")) {
			t.Fatalf("%q leaked the secret", path)
		}
	})
}

// The peer server reports about a task (stream-cache notes, service-down)
// with the credentials of the dfget that told it about the task; a dfget
// that sends none gets the server's own, from the dfget that started it.
func TestReportsUseTheTasksCredentials(t *testing.T) {
	var mu sync.Mutex
	auth := map[string]string{} // path -> Authorization
	sn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth[r.URL.Path+" "+r.URL.Query().Get("cid")] = r.Header.Get("Authorization")
		mu.Unlock()
		code := types.CodeGetPieceReport
		if r.URL.Path == "/peer/service/down" {
			code = types.CodeGetPeerDown
		}
		_ = json.NewEncoder(w).Encode(types.ResultInfo{Code: code})
	}))
	defer sn.Close()
	node := sn.Listener.Addr().String()
	dir := t.TempDir()
	s := NewServer(ServerConfig{IP: "127.0.0.1", Token: testToken, DataDir: dir, ExpireTime: 50 * time.Millisecond, AliveTime: time.Minute,
		NodeToken: "starter"}, quietLog())
	h := s.Handler()

	do(t, h, "POST", "/stream/task", "127.0.0.1:1", map[string]string{"taskFileName": "st", "taskID": "T", "cid": "S",
		"superNode": node, "pieceSize": strconv.Itoa(testPieceSize), "windowSize": "2", "nodeToken": "streamer"}, nil)
	if w := do(t, h, "POST", "/stream/piece", "127.0.0.1:1", map[string]string{"taskFileName": "st", "pieceNum": "0",
		"pieceSize": strconv.Itoa(testPieceSize)}, piece.Wrap(nil, []byte("abc"), testPieceSize)); w.Code != 200 {
		t.Fatalf("push: %d %s", w.Code, w.Body)
	}
	// The "cached" report goes out before the cache is dropped: a drop
	// would otherwise cancel it with the eviction, and nothing be sent.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		_, sent := auth["/peer/piece/stream S"]
		mu.Unlock()
		if sent || time.Now().After(deadline) {
			break
		}
	}
	do(t, h, "DELETE", "/stream/task", "127.0.0.1:1", map[string]string{"taskFileName": "st"}, nil)

	for _, f := range []struct{ name, cid, token string }{{"mine", "M", "finisher"}, {"theirs", "O", ""}} {
		if err := os.WriteFile(filepath.Join(dir, f.name+ServiceSuffix), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		hdr := map[string]string{}
		if f.token != "" {
			hdr["nodeToken"] = f.token
		}
		q := "taskFileName=" + f.name + "&taskID=T&cid=" + f.cid + "&superNode=" + node
		if w := do(t, h, "GET", "/client/finish?"+q, "127.0.0.1:1", hdr, nil); w.Code != 200 {
			t.Fatalf("finish: %d", w.Code)
		}
	}
	time.Sleep(100 * time.Millisecond)
	s.gc(context.Background(), false)

	mu.Lock()
	defer mu.Unlock()
	for key, want := range map[string]string{
		"/peer/piece/stream S": "Bearer streamer",
		"/peer/service/down M": "Bearer finisher",
		"/peer/service/down O": "Bearer starter",
	} {
		if got := auth[key]; got != want {
			t.Errorf("%s: Authorization %q, want %q (all: %v)", key, got, want, auth)
		}
	}
}

// The local-only endpoints want the server's token even from loopback: a
// local service that fetches URLs for others (a supernode on this host)
// must not reach them.
func TestLocalEndpointsWantToken(t *testing.T) {
	s, dir := newTestServer(t)
	h := s.Handler()
	for _, tok := range []string{"", "wrong", testToken + "x"} {
		for _, c := range []struct{ method, target string }{
			{"GET", "/check/x"}, {"GET", "/client/finish?taskFileName=x&taskID=T&cid=C"}, {"GET", "/rate/x"},
			{"POST", "/stream/task"}, {"DELETE", "/stream/task"}, {"POST", "/stream/piece"}, {"POST", "/stream/slot"},
		} {
			w := do(t, h, c.method, c.target, "127.0.0.1:1", map[string]string{api.HeaderLocalToken: tok, "dataDir": dir, "rateLimit": "5"}, nil)
			if w.Code != http.StatusForbidden {
				t.Errorf("%s %s with token %q: %d %s", c.method, c.target, tok, w.Code, w.Body)
			}
		}
	}
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("refused calls registered %d tasks", n)
	}
	if w := do(t, h, "GET", "/check/x", "127.0.0.1:1", map[string]string{"dataDir": dir}, nil); w.Code != http.StatusOK {
		t.Fatalf("/check/ with the token: %d %s", w.Code, w.Body)
	}
}

// The server records its token in a meta file only its user can read, and
// a dfget's check picks it up from there.
func TestMetaTokenReachesDfget(t *testing.T) {
	dir := t.TempDir()
	meta := filepath.Join(dir, "meta", "host.meta")
	s := NewServer(ServerConfig{IP: "127.0.0.1", DataDir: filepath.Join(dir, "data"), MetaPath: meta,
		ExpireTime: time.Minute, AliveTime: time.Minute}, quietLog())
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, l, io.Discard) }()
	defer func() { cancel(); <-done }()
	for ReadMeta(meta).ServicePort == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	m := ReadMeta(meta)
	if m.Token == "" || m.Token != s.cfg.Token {
		t.Fatalf("meta token %q, server's %q", m.Token, s.cfg.Token)
	}
	if st, err := os.Stat(meta); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("meta mode: %v %v", st.Mode(), err)
	}
	c := api.New()
	o := SpawnOptions{IP: "127.0.0.1", MetaPath: meta, DataDir: filepath.Join(dir, "data"), TaskFileName: "x"}
	if p, ok, _ := check(ctx, c, o); !ok || p != m.ServicePort {
		t.Fatalf("check: port %d ok %v", p, ok)
	}
	if _, err := c.FairRate(ctx, "127.0.0.1", m.ServicePort, "x", 10); err != nil {
		t.Fatalf("a later control call: %v", err)
	}
}

// A server on every address (dfdaemon's, at 0.0.0.0) takes the local
// calls of its host's dfgets, which reach it on the host's outward
// address from that same address; a caller from another address is
// refused whatever it sends.
func TestLocalCallsOnAnyAddress(t *testing.T) {
	s := NewServer(ServerConfig{IP: "0.0.0.0", Token: testToken, DataDir: t.TempDir(), ExpireTime: time.Minute,
		AliveTime: time.Minute}, quietLog())
	h := s.Handler()
	check := func(remote string) int {
		r := httptest.NewRequest("GET", "/check/x", nil)
		r.RemoteAddr = remote
		r.Header.Set(api.HeaderLocalToken, testToken)
		local := &net.TCPAddr{IP: net.ParseIP("198.18.0.4"), Port: 52010}
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(local)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if c := check("198.18.0.4:40000"); c != http.StatusOK {
		t.Errorf("call from the host's own address: %d", c)
	}
	if c := check("198.18.0.5:40000"); c != http.StatusForbidden {
		t.Errorf("call from another host: %d", c)
	}
}

// A piece request's Range is one range naming both bounds, as every dfget
// (ours and Dragonfly 1.x) sends it; anything else is a 400 before any
// file is opened, never a 416 or a piece.
func TestPieceRequestRanges(t *testing.T) {
	s, dir := newTestServer(t)
	h := s.Handler()
	content := bytes.Repeat([]byte("x"), 3*testPieceSize)
	if err := os.WriteFile(filepath.Join(dir, "f"+ServiceSuffix), content, 0o644); err != nil {
		t.Fatal(err)
	}
	do(t, h, "GET", "/check/f", "127.0.0.1:1", map[string]string{"dataDir": dir}, nil)
	p1 := piece.Range(1, testPieceSize, -1)
	tests := []struct {
		rg, num, src string
		code         int
		length       int64 // content bytes of an accepted request
	}{
		{"bytes=" + piece.Range(0, testPieceSize, -1), "0", "", http.StatusPartialContent, testPieceSize - piece.WrapSize},
		{"bytes=" + p1, "1", "", http.StatusPartialContent, testPieceSize - piece.WrapSize},
		{"bytes=5-5", "0", "source", http.StatusPartialContent, 1},
		{"bytes=100-199", "0", "source", http.StatusPartialContent, 100},
		{"bytes=-5", "0", "source", http.StatusBadRequest, 0},
		{"bytes=-" + strconv.Itoa(testPieceSize), "0", "", http.StatusBadRequest, 0},
		{"bytes=0-99,200-299", "0", "source", http.StatusBadRequest, 0},
		{"bytes=" + p1 + ",0-4", "1", "", http.StatusBadRequest, 0},
		{"bytes=99-0", "0", "source", http.StatusBadRequest, 0},
		{"bytes=5-", "0", "source", http.StatusBadRequest, 0},
		{"bytes=0-99999999999999999999", "0", "source", http.StatusBadRequest, 0},
		{"bytes=0-9223372036854775807", "0", "source", http.StatusBadRequest, 0},
		{"bytes=+0-99", "0", "source", http.StatusBadRequest, 0},
		{"bytes=0-+99", "0", "source", http.StatusBadRequest, 0},
		{"items=0-99", "0", "source", http.StatusBadRequest, 0},
		{"bytes 0-99", "0", "source", http.StatusBadRequest, 0},
		{"", "0", "source", http.StatusBadRequest, 0},
	}
	for _, tc := range tests {
		hdr := http.Header{}
		hdr.Set("Range", tc.rg)
		hdr.Set("pieceNum", tc.num)
		hdr.Set("pieceSize", strconv.Itoa(testPieceSize))
		hdr.Set("cdnSource", tc.src)
		p, err := parsePieceRequest(hdr)
		if ok := tc.code == http.StatusPartialContent; ok != (err == nil) || (ok && p.length != tc.length) {
			t.Errorf("parsePieceRequest(%q, num %s, %q) = %+v, %v", tc.rg, tc.num, tc.src, p, err)
		}
		w := do(t, h, "GET", "/peer/file/f", "10.0.0.9:1", map[string]string{"Range": tc.rg,
			"pieceNum": tc.num, "pieceSize": strconv.Itoa(testPieceSize), "cdnSource": tc.src}, nil)
		if w.Code != tc.code {
			t.Errorf("GET Range %q, num %s, %q: %d %q, want %d", tc.rg, tc.num, tc.src, w.Code, w.Body, tc.code)
		}
	}
}
