package e2e

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// origin is a real HTTP server with one file per path, counting requests.
type origin struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	chunked  map[string]bool
	delay    map[string]time.Duration // per 64 KiB written
	statuses map[string]map[int]int   // path -> status -> count
	ranges   map[string][]string
	modTime  time.Time
}

func newOrigin(t *testing.T) *origin {
	o := &origin{files: map[string][]byte{}, chunked: map[string]bool{}, delay: map[string]time.Duration{},
		statuses: map[string]map[int]int{}, ranges: map[string][]string{}, modTime: time.Now().Add(-time.Hour).Truncate(time.Second)}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) add(path string, data []byte) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files[path] = data
	return o.URL + path
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	data, ok := o.files[r.URL.Path]
	chunked, delay := o.chunked[r.URL.Path], o.delay[r.URL.Path]
	if h := r.Header.Get("Range"); h != "" {
		o.ranges[r.URL.Path] = append(o.ranges[r.URL.Path], h)
	}
	o.mu.Unlock()
	sw := &statusRecorder{ResponseWriter: w}
	defer func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.statuses[r.URL.Path] == nil {
			o.statuses[r.URL.Path] = map[int]int{}
		}
		o.statuses[r.URL.Path][sw.status]++
	}()
	switch {
	case !ok:
		http.NotFound(sw, r)
	case chunked:
		sw.WriteHeader(http.StatusOK)
		for i := 0; i < len(data); i += 100 << 10 {
			_, _ = sw.Write(data[i:min(i+100<<10, len(data))])
			sw.Flush()
		}
	default:
		var rs io.ReadSeeker = bytes.NewReader(data)
		if delay > 0 {
			rs = &slowReader{ReadSeeker: rs, delay: delay}
		}
		http.ServeContent(sw, r, "", o.modTime, rs)
	}
}

// addSlow is add for a file served at 64 KiB per delay.
func (o *origin) addSlow(path string, data []byte, delay time.Duration) string {
	u := o.add(path, data)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delay[path] = delay
	return u
}

// count is how many requests for path got status.
func (o *origin) count(path string, status int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.statuses[path][status]
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(c int) {
	if s.status == 0 {
		s.status = c
	}
	s.ResponseWriter.WriteHeader(c)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() { s.ResponseWriter.(http.Flusher).Flush() }

type slowReader struct {
	io.ReadSeeker
	delay time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	time.Sleep(s.delay)
	return s.ReadSeeker.Read(p)
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// md5Matches reports whether wrapped has the md5 a pieceMd5 names.
func md5Matches(wrapped []byte, pieceMd5 string) bool {
	d, _, err := digest.ParsePieceMd5(pieceMd5)
	return err == nil && d.Verify(wrapped) == nil
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// supernode is a started bin/supernode.
type supernode struct {
	*Proc
	home              string
	api, download     int
	apiURL, pieceBase string
}

func startSupernode(t *testing.T, home string, extra ...string) *supernode {
	t.Helper()
	api, dl := FreePort(t), FreePort(t)
	for dl == api {
		dl = FreePort(t)
	}
	return startSupernodeAt(t, home, api, dl, extra...)
}

// startSupernodeAt is startSupernode on given API and download ports (a
// cluster's members list each other's before they start).
func startSupernodeAt(t *testing.T, home string, api, dl int, extra ...string) *supernode {
	t.Helper()
	// Test origins are on loopback, which a supernode refuses unless told;
	// an extra --source-allow replaces this one ("" for none).
	args := []string{"--home-dir", home, "--port", strconv.Itoa(api), "--download-port", strconv.Itoa(dl), "--advertise-ip", "127.0.0.1",
		"--source-allow", "127.0.0.1"}
	if !slices.Contains(extra, "--config") {
		args = append(args, "--config", "/dev/null")
	}
	args = append(args, extra...)
	p := StartProcess(t, "supernode-"+strconv.Itoa(api), Binary(t, "supernode"), args...)
	WaitPort(t, Addr(api), 10*time.Second)
	WaitPort(t, Addr(dl), 10*time.Second)
	return &supernode{Proc: p, home: home, api: api, download: dl, apiURL: "http://" + Addr(api),
		pieceBase: "http://" + Addr(dl)}
}

var httpc = &http.Client{Timeout: 30 * time.Second}

// client is a v1-style client driving the legacy protocol by hand.
type client struct {
	t      *testing.T
	sn     *supernode
	cid    string
	taskID string
	size   int32
}

func newClient(t *testing.T, sn *supernode, cid string) *client {
	return &client{t: t, sn: sn, cid: cid}
}

// registerRaw posts body and returns the HTTP status and raw reply.
func (c *client) registerRaw(body any) (int, []byte) {
	c.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := httpc.Post(c.sn.apiURL+"/peer/registry", "application/json;charset=utf-8", bytes.NewReader(b))
	if err != nil {
		c.t.Fatalf("register: %v", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (c *client) registerReq(rawURL string) types.RegisterRequest {
	return types.RegisterRequest{RawURL: rawURL, TaskURL: rawURL, CID: c.cid, IP: "127.0.0.1", HostName: "e2e",
		Port: 0, Path: "/peer/file/" + c.cid, Version: "e2e", SuperNodeIP: "127.0.0.1"}
}

// register registers for rawURL and fails the test on any error.
func (c *client) register(req types.RegisterRequest) types.RegisterResponseData {
	c.t.Helper()
	status, body := c.registerRaw(req)
	var res struct {
		Code int                        `json:"code"`
		Data types.RegisterResponseData `json:"data"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &res) != nil || res.Code != types.CodeSuccess {
		c.t.Fatalf("register: HTTP %d %s", status, body)
	}
	c.taskID, c.size = res.Data.TaskID, res.Data.PieceSize
	return res.Data
}

type result struct {
	Code int             `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data"`
}

func (c *client) get(path string, q url.Values) result {
	c.t.Helper()
	resp, err := httpc.Get(c.sn.apiURL + path + "?" + q.Encode())
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r result
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil {
		c.t.Fatalf("GET %s: HTTP %d %q", path, resp.StatusCode, body)
	}
	return r
}

// pull calls /peer/task.
func (c *client) pull(status, res int, rng, dstCid string) result {
	return c.get("/peer/task", url.Values{"taskId": {c.taskID}, "srcCid": {c.cid}, "dstCid": {dstCid},
		"status": {strconv.Itoa(status)}, "result": {strconv.Itoa(res)}, "range": {rng}})
}

func (c *client) pieces(r result) []types.PieceInfo {
	c.t.Helper()
	var ps []types.PieceInfo
	if len(r.Data) > 0 && string(r.Data) != "null" {
		if err := json.Unmarshal(r.Data, &ps); err != nil {
			c.t.Fatalf("601 data: %v: %s", err, r.Data)
		}
	}
	return ps
}

func (c *client) reportSuccess(p types.PieceInfo) {
	c.t.Helper()
	r := c.get("/peer/piece/suc", url.Values{"taskId": {c.taskID}, "cid": {c.cid}, "dstCid": {p.CID}, "pieceRange": {p.Range}})
	if r.Code != types.CodeGetPieceReport {
		c.t.Fatalf("piece/suc: %+v", r)
	}
}

// fetch downloads a piece from its holder (the supernode's piece server),
// checks its md5 and wrapper, and returns the content.
func (c *client) fetch(p types.PieceInfo) []byte {
	c.t.Helper()
	u := fmt.Sprintf("http://%s:%d%s", p.PeerIP, p.PeerPort, p.Path)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Range", "bytes="+p.Range)
	resp, err := httpc.Do(req)
	if err != nil {
		c.t.Fatalf("fetch piece %d: %v", p.PieceNum, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent {
		c.t.Fatalf("fetch piece %d: HTTP %d %s", p.PieceNum, resp.StatusCode, b)
	}
	if p.PieceMd5 != "" && !md5Matches(b, p.PieceMd5) {
		c.t.Fatalf("piece %d: md5 %s, want %s", p.PieceNum, md5hex(b), p.PieceMd5)
	}
	content, err := piece.Unwrap(b)
	if err != nil {
		c.t.Fatalf("piece %d: %v", p.PieceNum, err)
	}
	return content
}

// download runs the whole pull loop and returns the file and the 600 data.
func (c *client) download(timeout time.Duration) ([]byte, types.FinishData) {
	c.t.Helper()
	got := map[int][]byte{}
	deadline := time.Now().Add(timeout)
	r := c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
	for time.Now().Before(deadline) {
		switch r.Code {
		case types.CodePeerFinish:
			var fd types.FinishData
			if err := json.Unmarshal(r.Data, &fd); err != nil {
				c.t.Fatalf("600 data: %v", err)
			}
			var out []byte
			for i := range len(got) {
				b, ok := got[i]
				if !ok {
					c.t.Fatalf("600 but piece %d missing (have %d)", i, len(got))
				}
				out = append(out, b...)
			}
			return out, fd
		case types.CodePeerContinue:
			ps := c.pieces(r)
			if len(ps) == 0 {
				time.Sleep(20 * time.Millisecond)
				r = c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
				continue
			}
			for _, p := range ps {
				got[p.PieceNum] = c.fetch(p)
				c.reportSuccess(p)
			}
			last := ps[len(ps)-1]
			r = c.pull(types.TaskStatusRunning, types.ResultSemiSuc, last.Range, last.CID)
		case types.CodePeerWait:
			time.Sleep(20 * time.Millisecond)
			r = c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
		default:
			c.t.Fatalf("/peer/task: %+v", r)
		}
	}
	c.t.Fatalf("download did not finish in %s", timeout)
	return nil, types.FinishData{}
}

func taskInfo(t *testing.T, sn *supernode, id string) types.TaskInfo {
	t.Helper()
	resp, err := httpc.Get(sn.apiURL + "/api/v1/tasks/" + id)
	if err != nil {
		t.Fatalf("task info: %v", err)
	}
	defer resp.Body.Close()
	var ti types.TaskInfo
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ti) != nil {
		t.Fatalf("task info: HTTP %d", resp.StatusCode)
	}
	return ti
}

func waitCDN(t *testing.T, sn *supernode, id string, timeout time.Duration) types.TaskInfo {
	t.Helper()
	var ti types.TaskInfo
	Eventually(t, timeout, "cdn success", func() bool {
		ti = taskInfo(t, sn, id)
		if ti.CdnStatus == types.CDNStatusFailed {
			t.Fatalf("cdn failed: %+v", ti)
		}
		return ti.CdnStatus == types.CDNStatusSuccess
	})
	return ti
}
