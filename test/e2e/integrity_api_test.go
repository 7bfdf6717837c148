package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// fakeV1Peer is a Dragonfly 1.x-style client driven by hand: it registers
// through the API with a peer server of its own, and like a v1 dfget it
// reports a piece with result=503 while the piece is only in its memory.
// Its peer server answers 404 for a piece until the piece is "written",
// which happens just before its /peer/piece/suc.
type fakeV1Peer struct {
	*client
	srv *httptest.Server

	mu      sync.Mutex
	mem     map[string][]byte // range -> wrapped piece, fetched but not written
	written map[string][]byte
	early   []string // ranges asked for before they were written
	served  []string
}

func newFakeV1Peer(t *testing.T, sn *supernode, ip, cid string) *fakeV1Peer {
	t.Helper()
	f := &fakeV1Peer{client: newClient(t, sn, cid), mem: map[string][]byte{}, written: map[string][]byte{}}
	ln, err := net.Listen("tcp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Listener = ln
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeV1Peer) serve(w http.ResponseWriter, r *http.Request) {
	rng := strings.TrimPrefix(r.Header.Get("Range"), "bytes=")
	f.mu.Lock()
	b, ok := f.written[rng]
	if ok {
		f.served = append(f.served, rng)
	} else {
		f.early = append(f.early, rng)
	}
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Range", "bytes "+rng+"/*")
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(b)
}

// register registers the fake for url with its peer server's address.
func (f *fakeV1Peer) register(url string) {
	f.t.Helper()
	addr := f.srv.Listener.Addr().(*net.TCPAddr)
	req := f.registerReq(url)
	req.IP, req.Port = addr.IP.String(), addr.Port
	f.client.register(req)
}

// fetchRaw downloads a piece as it is on the wire (wrapped).
func (f *fakeV1Peer) fetchRaw(p types.PieceInfo) []byte {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(p.PeerIP, strconv.Itoa(p.PeerPort))+p.Path, nil)
	req.Header.Set("Range", "bytes="+p.Range)
	resp, err := httpc.Do(req)
	if err != nil {
		f.t.Fatalf("fake fetch piece %d: %v", p.PieceNum, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent {
		f.t.Fatalf("fake fetch piece %d: HTTP %d", p.PieceNum, resp.StatusCode)
	}
	return b
}

// semiSucAll pulls every piece, keeps it in memory and reports each one
// with result=503 only, until the supernode answers 600. It returns the
// piece infos it was given.
func (f *fakeV1Peer) semiSucAll(timeout time.Duration) map[int]types.PieceInfo {
	f.t.Helper()
	got := map[int]types.PieceInfo{}
	var queue []types.PieceInfo
	r := f.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		switch r.Code {
		case types.CodePeerFinish:
			return got
		case types.CodePeerContinue:
			queue = append(queue, f.pieces(r)...)
		case types.CodePeerWait:
			time.Sleep(20 * time.Millisecond)
		default:
			f.t.Fatalf("fake /peer/task: %+v", r)
		}
		if len(queue) == 0 {
			r = f.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
			continue
		}
		p := queue[0]
		queue = queue[1:]
		b := f.fetchRaw(p)
		f.mu.Lock()
		f.mem[p.Range] = b
		f.mu.Unlock()
		got[p.PieceNum] = p
		r = f.pull(types.TaskStatusRunning, types.ResultSemiSuc, p.Range, p.CID)
	}
	f.t.Fatalf("fake v1 peer did not finish in %s", timeout)
	return nil
}

// write moves a piece from memory to "the file" and reports it with
// /peer/piece/suc, as a v1 dfget's writer does.
func (f *fakeV1Peer) write(p types.PieceInfo) {
	f.mu.Lock()
	f.written[p.Range] = f.mem[p.Range]
	f.mu.Unlock()
	f.reportSuccess(p)
}

func (f *fakeV1Peer) requests() (early, served []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.early...), append([]string(nil), f.served...)
}

// A v1 peer that reported pieces with result=503 (in its memory, not yet in
// its file) is no holder of them: a real dfget is never sent there for a
// piece until that peer's /peer/piece/suc, and then it is.
func TestIntegrityV1SemiSuccessIsNotAHolder(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5*4<<20, 111)
	url := o.add("/semisuc.bin", data)
	sn := startSupernode(t, t.TempDir())
	fake := newFakeV1Peer(t, sn, "127.0.0.3", "fake-v1-cid")
	fake.register(url)
	infos := fake.semiSucAll(time.Minute)
	if len(infos) < 2 {
		t.Fatalf("want several pieces, got %d", len(infos))
	}
	// Piece 0 is written and reported: the fake is its only peer holder.
	fake.write(infos[0])

	p := newDfgetPeer(t, "127.0.0.2")
	out := filepath.Join(t.TempDir(), "out")
	if r := p.run(sn, "-u", url, "-o", out, "--notbs"); r.code != 0 {
		t.Fatalf("dfget: exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, out, data)
	early, served := fake.requests()
	t.Logf("fake v1 peer: %d requests for pieces only 503-reported %v, %d for written ones %v", len(early), early, len(served), served)
	if len(early) > 0 {
		t.Errorf("dfget was sent to the v1 peer for %d pieces it had only 503-reported (not written): %v", len(early), early)
	}
	if len(served) == 0 {
		t.Errorf("dfget never fetched piece 0 from the v1 peer after its /peer/piece/suc")
	}
}

// longestLogLine is the longest line the supernode wrote to its output and
// its log files.
func longestLogLine(t *testing.T, sn *supernode) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(sn.home, "logs", "*"))
	longest := 0
	for _, f := range append(files, sn.LogPath) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range bytes.Split(b, []byte("\n")) {
			longest = max(longest, len(l))
		}
	}
	return longest
}

// supernodeLogs is everything the supernode logged.
func supernodeLogs(t *testing.T, sn *supernode) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(sn.home, "logs", "*"))
	var sb strings.Builder
	for _, f := range append(files, sn.LogPath) {
		b, _ := os.ReadFile(f)
		sb.Write(b)
	}
	return sb.String()
}

// A registration or a preheat with a 1.9 MB URL (under the 4 MiB body
// limit) is refused at once with a short error naming the limit; neither
// the reply nor any log line echoes the URL.
func TestIntegrityAPILongURLRefused(t *testing.T) {
	o := newOrigin(t)
	long := o.add("/long.bin", []byte("x")) + "?pad=" + strings.Repeat("a", 1900000)
	sn := startSupernode(t, t.TempDir())
	c := newClient(t, sn, "long-url-cid")
	for i := range 5 {
		t0 := time.Now()
		status, body := c.registerRaw(c.registerReq(long))
		took := time.Since(t0)
		if i == 0 {
			t.Logf("register with a %d-byte URL: HTTP %d in %v, %d-byte reply: %.300s", len(long), status, took, len(body), body)
		}
		var e types.ErrorResponse
		if status != http.StatusInternalServerError || json.Unmarshal(body, &e) != nil || e.Code != types.CodeParamError ||
			!strings.Contains(e.Message, "the limit is 16384") {
			t.Fatalf("register: HTTP %d %.300s", status, body)
		}
		if len(body) > 512 || took > 2*time.Second {
			t.Fatalf("reply of %d bytes in %v", len(body), took)
		}
	}
	b, _ := json.Marshal(types.PreheatCreateRequest{Type: "file", URL: long})
	resp, err := httpc.Post(sn.apiURL+"/api/v1/preheats", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("preheat: HTTP %d, %d-byte reply: %s", resp.StatusCode, len(pb), pb)
	if resp.StatusCode != http.StatusBadRequest || len(pb) > 512 || !strings.Contains(string(pb), "the limit is 16384") {
		t.Fatalf("preheat: HTTP %d %.300s", resp.StatusCode, pb)
	}
	if n := longestLogLine(t, sn); n > 4096 {
		t.Fatalf("a supernode log line is %d bytes long", n)
	}
}

// A source Range header naming several ranges is refused at registration
// (its answer is a multipart body, not the file); a single range works.
func TestIntegrityAPIMultiRangeRefused(t *testing.T) {
	o := newOrigin(t)
	data := randomData(100, 7)
	url := o.add("/range.bin", data)
	sn := startSupernode(t, t.TempDir())
	c := newClient(t, sn, "multi-range-cid")
	req := c.registerReq(url)
	req.Headers = []string{"Range: bytes=0-9,20-29"}
	status, body := c.registerRaw(req)
	t.Logf("multi-range register: HTTP %d %s", status, body)
	if status != http.StatusInternalServerError || !strings.Contains(string(body), "single range") {
		t.Fatalf("multi-range register: HTTP %d %s", status, body)
	}
	one := newClient(t, sn, "single-range-cid")
	req = one.registerReq(url)
	req.Headers = []string{"Range: bytes=20-29"}
	one.register(req)
	got, _ := one.download(30 * time.Second)
	if !bytes.Equal(got, data[20:30]) {
		t.Fatalf("single range: got %q, want %q", got, data[20:30])
	}
}

// URL credentials are used to fetch the source but never shown by the API,
// logged or written to the .meta; a restarted supernode still recognises
// its cache for that URL (revalidated, not fetched again).
func TestIntegrityAPICredentialsMasked(t *testing.T) {
	data := randomData(3<<20, 12)
	mod := time.Now().Add(-time.Hour).Truncate(time.Second)
	var full, auth atomicCounter
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "s3cret" {
			auth.add()
			w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/cred.bin":
		case "/cut.bin": // dies mid-body: the CDN fails after registration
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			_, _ = w.Write(data[:1<<20])
			panic(http.ErrAbortHandler)
		default:
			http.NotFound(w, r)
			return
		}
		sw := &statusRecorder{ResponseWriter: w}
		http.ServeContent(sw, r, "", mod, bytes.NewReader(data))
		if sw.status == http.StatusOK {
			full.add()
		}
	}))
	t.Cleanup(srv.Close)
	url := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1) + "/cred.bin"
	home := t.TempDir()
	sn := startSupernode(t, home)
	c := newClient(t, sn, "cred-cid")
	c.register(c.registerReq(url))
	got, _ := c.download(30 * time.Second)
	if !bytes.Equal(got, data) {
		t.Fatal("downloaded content differs")
	}
	resp, err := httpc.Get(sn.apiURL + "/api/v1/tasks/" + c.taskID)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("task info: %s", info)
	meta, err := os.ReadFile(filepath.Join(home, "repo", "download", c.taskID[:3], c.taskID+".meta"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf(".meta: %s", meta)
	for what, s := range map[string]string{"task info": string(info), ".meta": string(meta), "log": supernodeLogs(t, sn)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%s holds the password", what)
		}
	}
	if !strings.Contains(string(info), "user:xxxxx@") || !strings.Contains(string(meta), "user:xxxxx@") {
		t.Errorf("masked URL missing: info %s meta %s", info, meta)
	}
	// A failing source: neither the refusal nor the log shows the password.
	bad := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1) + "/missing.bin"
	cb := newClient(t, sn, "cred-cid-bad")
	st, reply := cb.registerRaw(cb.registerReq(bad))
	t.Logf("failing source: HTTP %d %s", st, reply)
	if st != http.StatusInternalServerError || strings.Contains(string(reply), "s3cret") {
		t.Errorf("failing source: HTTP %d %s", st, reply)
	}
	cut := newClient(t, sn, "cred-cid-cut")
	cut.register(cut.registerReq(strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1) + "/cut.bin"))
	Eventually(t, 10*time.Second, "cdn of the cut source failed", func() bool {
		return taskInfo(t, sn, cut.taskID).CdnStatus == types.CDNStatusFailed
	})
	if logs := supernodeLogs(t, sn); strings.Contains(logs, "s3cret") {
		i := strings.Index(logs, "s3cret")
		t.Errorf("the log holds the password after failing sources: ...%s...", logs[max(0, i-200):i+20])
	}
	if err := sn.Stop(5 * time.Second); err != nil {
		t.Logf("stop: %v", err)
	}
	sn2 := startSupernode(t, home)
	c2 := newClient(t, sn2, "cred-cid-2")
	c2.register(c2.registerReq(url))
	got, _ = c2.download(30 * time.Second)
	if !bytes.Equal(got, data) {
		t.Fatal("content after restart differs")
	}
	t.Logf("origin: %d full GETs, %d unauthorised", full.get(), auth.get())
	if full.get() != 1 || auth.get() != 0 {
		t.Errorf("origin: %d full GETs (want 1: the restarted supernode revalidates its cache), %d unauthorised (want 0)", full.get(), auth.get())
	}
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add()       { c.n.Add(1) }
func (c *atomicCounter) get() int64 { return c.n.Load() }

// The Bearer scheme of the API token is case-insensitive (RFC 9110).
func TestIntegrityAPIBearerCaseInsensitive(t *testing.T) {
	sn := startSupernode(t, t.TempDir(), "--auth-token", "tok")
	for auth, want := range map[string]int{
		"Bearer tok": http.StatusOK, "bearer tok": http.StatusOK, "BEARER tok": http.StatusOK,
		"bearer other": http.StatusUnauthorized, "": http.StatusUnauthorized,
	} {
		req, _ := http.NewRequest(http.MethodGet, sn.apiURL+"/api/v1/peers", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Authorization %q: HTTP %d, want %d", auth, resp.StatusCode, want)
		}
	}
}

// Where a v1 dfget acts on the answer, the supernode answers as v1 does:
// reports for an unknown task are HTTP 500 {"code":500} (a v1 dfget takes
// an HTTP 200 for an acknowledgement), unknown REST IDs are HTTP 500 with
// code 500, deleting an unknown preheat answers true and a duplicate
// preheat's 208 carries the ID.
func TestIntegrityAPIV1Answers(t *testing.T) {
	o := newOrigin(t)
	url := o.add("/v1answers.bin", randomData(1000, 3))
	sn := startSupernode(t, t.TempDir())
	call := func(method, path string, body []byte) (int, string) {
		req, _ := http.NewRequest(method, sn.apiURL+path, bytes.NewReader(body))
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	for _, path := range []string{
		"/peer/piece/suc?taskId=nope&cid=c&dstCid=d&pieceRange=0-9",
		"/peer/service/down?taskId=nope&cid=c",
		"/api/v1/tasks/nope",
	} {
		st, body := call(http.MethodGet, path, nil)
		t.Logf("GET %s: HTTP %d %s", path, st, body)
		if st != http.StatusInternalServerError || !strings.HasPrefix(body, `{"code":500,"message":`) {
			t.Errorf("GET %s: HTTP %d %s, want HTTP 500 {\"code\":500,...}", path, st, body)
		}
	}
	st, body := call(http.MethodDelete, "/api/v1/preheats/nope", nil)
	t.Logf("DELETE unknown preheat: HTTP %d %s", st, body)
	if st != http.StatusOK || body != "true" {
		t.Errorf("DELETE unknown preheat: HTTP %d %s, want 200 true", st, body)
	}
	req, _ := json.Marshal(types.PreheatCreateRequest{Type: "file", URL: url})
	st, body = call(http.MethodPost, "/api/v1/preheats", req)
	var created types.PreheatCreateResponse
	if st != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil {
		t.Fatalf("preheat: HTTP %d %s", st, body)
	}
	Eventually(t, 30*time.Second, "preheat done", func() bool {
		_, b := call(http.MethodGet, "/api/v1/preheats/"+created.ID, nil)
		return strings.Contains(b, `"status":"SUCCESS"`)
	})
	st, body = call(http.MethodPost, "/api/v1/preheats", req)
	t.Logf("duplicate preheat: HTTP %d %s", st, body)
	if st != http.StatusAlreadyReported || body != `{"code":208,"message":"preheat task already exists, id:`+created.ID+`"}` {
		t.Errorf("duplicate preheat: HTTP %d %s", st, body)
	}
}
