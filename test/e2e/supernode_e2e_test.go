package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/test/disktest"
)

func TestSupernodeDownloadAndCache(t *testing.T) {
	o := newOrigin(t)
	data := randomData(9<<20+12345, 1)
	u := o.add("/file.bin", data)
	home, small := cacheHome(t)
	sn := startSupernode(t, home)

	c := newClient(t, sn, "127.0.0.1-1-1.000")
	reg := c.register(c.registerReq(u))
	if reg.FileLength != int64(len(data)) || reg.PieceSize != piece.ComputeSize(int64(len(data))) || reg.CDNSource != "supernode" {
		t.Fatalf("register data: %+v", reg)
	}
	got, fin := c.download(time.Minute)
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes, md5 %s; want %d bytes md5 %s", len(got), md5hex(got), len(data), md5hex(data))
	}
	if fin.Md5 != md5hex(data) || fin.FileLength != piece.WrappedLength(int64(len(data)), reg.PieceSize) {
		t.Fatalf("600 data %+v", fin)
	}
	// A second client of the same file shares the task: no new source read.
	c2 := newClient(t, sn, "127.0.0.1-2-2.000")
	if r2 := c2.register(c2.registerReq(u)); r2.TaskID != reg.TaskID {
		t.Fatalf("second registration got task %s, want %s", r2.TaskID, reg.TaskID)
	}
	if got2, _ := c2.download(time.Minute); !bytes.Equal(got2, data) {
		t.Fatal("second download differs")
	}
	if n := o.count("/file.bin", 200); n != 1 {
		t.Fatalf("origin served the file %d times, want 1", n)
	}
	// Sidecars as in v1.
	dir := filepath.Join(sn.home, "repo", "download", reg.TaskID[:3])
	var meta map[string]any
	b, err := os.ReadFile(filepath.Join(dir, reg.TaskID+".meta"))
	if err != nil || json.Unmarshal(b, &meta) != nil {
		t.Fatalf("meta: %v %s", err, b)
	}
	if meta["realMd5"] != md5hex(data) || meta["finish"] != true || meta["success"] != true {
		t.Fatalf("meta %v", meta)
	}
	md5Lines, err := os.ReadFile(filepath.Join(dir, reg.TaskID+".md5"))
	if err != nil || strings.Count(string(md5Lines), "\n") != piece.Count(int64(len(data)), reg.PieceSize)+2 {
		t.Fatalf(".md5 sidecar: %v %q", err, md5Lines)
	}

	// A restarted supernode revalidates the cache with a conditional
	// request and does not read the file again.
	if err := sn.Stop(10 * time.Second); err != nil {
		t.Fatalf("supernode exit after SIGTERM: %v", err)
	}
	// The restarted supernode runs disk GC at once with a young threshold
	// no disk meets (keys from a YAML config): a young GC must spare a
	// recent file. The thresholds are capped to a share of the disk's size
	// (docs/supernode.md), so the GC only runs on a nearly full disk: the
	// home's small file system is filled to under that share.
	if small {
		fillTo(t, home, 4<<20)
	} else {
		t.Log("no small file system for the home (needs root and mkfs.ext4): the young GC finds enough space and removes nothing either way")
	}
	cfgPath := filepath.Join(t.TempDir(), "supernode.yml")
	if err := os.WriteFile(cfgPath, []byte("base:\n  youngGCThreshold: 1000000GB\n  fullGCThreshold: 1KB\n  gcDiskInterval: 100ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sn2 := startSupernode(t, sn.home, "--config", cfgPath, "--gc-initial-delay", "0s")
	Eventually(t, 10*time.Second, "a disk GC pass", func() bool {
		return metric(t, sn2, "dragonfly_supernode_last_gc_disks_timestamp_seconds") > 0
	})
	if n := metric(t, sn2, "dragonfly_supernode_gc_disks_total"); n != 0 {
		t.Fatalf("young disk GC removed %v cache files, want the recent one spared", n)
	}
	c3 := newClient(t, sn2, "127.0.0.1-3-3.000")
	c3.register(c3.registerReq(u))
	waitCDN(t, sn2, reg.TaskID, 10*time.Second)
	if got3, _ := c3.download(time.Minute); !bytes.Equal(got3, data) {
		t.Fatal("download after restart differs")
	}
	if n, n304 := o.count("/file.bin", 200), o.count("/file.bin", 304); n != 1 || n304 != 1 {
		t.Fatalf("after restart origin sent 200 x%d and 304 x%d, want 1 and 1", n, n304)
	}
	if metric(t, sn2, "dragonfly_supernode_cdn_cache_hit_total") != 1 {
		t.Fatal("cache hit not counted")
	}
}

// metric reads one unlabelled value from /metrics.
func metric(t *testing.T, sn *supernode, name string) float64 {
	t.Helper()
	resp, err := httpc.Get(sn.apiURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			if _, err := fmtSscan(v, &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestSupernodeChunkedSource(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5<<20+7, 2)
	u := o.add("/chunked", data)
	o.chunked["/chunked"] = true
	sn := startSupernode(t, t.TempDir())
	c := newClient(t, sn, "127.0.0.1-4-4.000")
	reg := c.register(c.registerReq(u))
	if reg.FileLength != -1 || reg.PieceSize != piece.DefaultSize {
		t.Fatalf("register of an unknown-length source: %+v", reg)
	}
	got, fin := c.download(time.Minute)
	if !bytes.Equal(got, data) || fin.Md5 != md5hex(data) {
		t.Fatalf("chunked download: %d bytes, want %d", len(got), len(data))
	}
	if ti := taskInfo(t, sn, reg.TaskID); ti.HTTPFileLength != int64(len(data)) || ti.PieceTotal != 2 {
		t.Fatalf("task info after cdn: %+v", ti)
	}
}

func TestSupernodeSourceFailures(t *testing.T) {
	o := newOrigin(t)
	sn := startSupernode(t, t.TempDir(), "--fail-access-interval", "1s")
	c := newClient(t, sn, "127.0.0.1-5-5.000")
	u := o.URL + "/missing"
	for i := range 2 {
		status, body := c.registerRaw(c.registerReq(u))
		var e types.ErrorResponse
		if status != http.StatusInternalServerError || json.Unmarshal(body, &e) != nil || e.Code != types.CodeURLNotReachable ||
			!strings.Contains(e.Message, "404") {
			t.Fatalf("register #%d of a 404 source: HTTP %d %s", i, status, body)
		}
	}
	if n := o.count("/missing", 404); n != 1 {
		t.Fatalf("origin got %d requests within --fail-access-interval, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	o.add("/missing", []byte("now here"))
	reg := c.register(c.registerReq(u))
	if got, _ := c.download(30 * time.Second); string(got) != "now here" || reg.FileLength != 8 {
		t.Fatalf("after the interval: %q", got)
	}
}

func TestSupernodeStreamWindow(t *testing.T) {
	o := newOrigin(t)
	data := randomData(5*(4<<20), 3) // 5 full pieces of content -> 6 pieces
	u := o.add("/stream.bin", data)
	sn := startSupernode(t, t.TempDir())

	a := newClient(t, sn, "127.0.0.1-6-6.000")
	req := a.registerReq(u)
	req.StreamMode, req.WindowSize, req.Port = true, 2, 15001
	reg := a.register(req)
	waitCDN(t, sn, reg.TaskID, 30*time.Second)
	nums := func(ps []types.PieceInfo) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p.PieceNum)
		}
		return out
	}
	r := a.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
	ps := a.pieces(r)
	if r.Code != types.CodePeerContinue || len(ps) != 2 || ps[0].PieceNum != 0 || ps[1].PieceNum != 1 {
		t.Fatalf("stream window 2 at start: code %d pieces %v", r.Code, nums(ps))
	}
	// Nothing outside the window while 0 and 1 are outstanding.
	if r = a.pull(types.TaskStatusStart, types.ResultInvalid, "", ""); r.Code != types.CodePeerWait {
		t.Fatalf("window full: got code %d pieces %v", r.Code, nums(a.pieces(r)))
	}
	a.fetch(ps[1])
	a.reportSuccess(ps[1]) // una stays 0: the window does not move
	if r = a.pull(types.TaskStatusStart, types.ResultInvalid, "", ""); r.Code != types.CodePeerWait {
		t.Fatalf("una=0: got code %d pieces %v", r.Code, nums(a.pieces(r)))
	}
	a.fetch(ps[0])
	a.reportSuccess(ps[0]) // una = 2: window [2,4)
	r = a.pull(types.TaskStatusRunning, types.ResultSuc, ps[0].Range, ps[0].CID)
	if got := nums(a.pieces(r)); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("window after una=2: code %d pieces %v", r.Code, got)
	}

	// a has piece 0. As a stream it is its holder only while its cache
	// says it holds it: from a POST /peer/piece/stream to the DELETE;
	// its success report alone makes it none.
	superCID := types.SuperNodeCIDPrefix + "127.0.0.1~" + reg.TaskID
	holderOf0 := func(cid string) string {
		b := newClient(t, sn, cid)
		rq := b.registerReq(u)
		rq.StreamMode, rq.WindowSize = true, 1
		b.register(rq)
		r := b.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
		ps := b.pieces(r)
		if len(ps) != 1 || ps[0].PieceNum != 0 {
			t.Fatalf("%s: want piece 0 only, got code %d %v", cid, r.Code, nums(ps))
		}
		return ps[0].CID
	}
	stream := func(method string) {
		q := url.Values{"taskId": {reg.TaskID}, "cid": {a.cid}, "pieceRange": {ps[0].Range}}
		req, _ := http.NewRequest(method, sn.apiURL+"/peer/piece/stream?"+q.Encode(), nil)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r result
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil || r.Code != types.CodeGetPieceReport {
			t.Fatalf("%s /peer/piece/stream: HTTP %d %+v", method, resp.StatusCode, r)
		}
	}
	if h := holderOf0("127.0.0.1-7-7.000"); h != superCID {
		t.Fatalf("on the stream's success report alone piece 0 offered from %s, want the supernode", h)
	}
	stream(http.MethodPost)
	if h := holderOf0("127.0.0.1-8-8.000"); h != a.cid {
		t.Fatalf("after POST piece 0 offered from %s, want the streaming holder %s", h, a.cid)
	}
	stream(http.MethodDelete)
	if h := holderOf0("127.0.0.1-9-9.000"); h != superCID {
		t.Fatalf("after DELETE piece 0 offered from %s, want the supernode", h)
	}
	stream(http.MethodPost)
	if h := holderOf0("127.0.0.1-10-10.000"); h != a.cid {
		t.Fatalf("after POST again piece 0 offered from %s, want %s", h, a.cid)
	}
	// Unknown cid: the v1 error envelope.
	q := url.Values{"taskId": {reg.TaskID}, "cid": {"nobody"}, "pieceRange": {ps[0].Range}}
	resp, err := httpc.Post(sn.apiURL+"/peer/piece/stream?"+q.Encode(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var e result
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if e.Code != types.CodeTargetNotFound {
		t.Fatalf("unknown cid: %+v", e)
	}
}

func TestSupernodeBadInput(t *testing.T) {
	o := newOrigin(t)
	u := o.add("/small", []byte("hello"))
	sn := startSupernode(t, t.TempDir())
	c := newClient(t, sn, "127.0.0.1-10-10.000")
	post := func(body string) (int, types.ErrorResponse) {
		resp, err := httpc.Post(sn.apiURL+"/peer/registry", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e types.ErrorResponse
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	for _, tc := range []struct{ name, body string }{
		{"malformed", `{"rawUrl":`},
		{"ftp", `{"rawUrl":"ftp://127.0.0.1/x","cid":"c","path":"/p","ip":"127.0.0.1"}`},
		{"no cid", `{"rawUrl":"` + u + `","path":"/p","ip":"127.0.0.1"}`},
		{"bad ip", `{"rawUrl":"` + u + `","cid":"c","path":"/p","ip":"::1"}`},
		{"bad header", `{"rawUrl":"` + u + `","cid":"c","path":"/p","ip":"127.0.0.1","headers":["nocolon"]}`},
		{"huge", `{"rawUrl":"` + strings.Repeat("a", 5<<20) + `"}`},
	} {
		if st, e := post(tc.body); st != http.StatusInternalServerError || e.Code != types.CodeParamError || e.Message == "" {
			t.Errorf("%s: HTTP %d %+v", tc.name, st, e)
		}
	}
	reg := c.register(c.registerReq(u))
	for _, tc := range []struct {
		name string
		q    url.Values
		code int
	}{
		{"unknown task", url.Values{"taskId": {"nope"}, "srcCid": {c.cid}, "status": {"700"}}, types.CodeTargetNotFound},
		{"unknown client", url.Values{"taskId": {reg.TaskID}, "srcCid": {"nope"}, "status": {"700"}}, types.CodeTargetNotFound},
		{"bad status", url.Values{"taskId": {reg.TaskID}, "srcCid": {c.cid}, "status": {"abc"}}, types.CodeParamError},
		{"bad range", url.Values{"taskId": {reg.TaskID}, "srcCid": {c.cid}, "status": {"701"}, "result": {"501"}, "range": {"7-3"}}, types.CodeParamError},
		{"bad result", url.Values{"taskId": {reg.TaskID}, "srcCid": {c.cid}, "status": {"701"}, "result": {"502"}, "range": {"0-9"}}, types.CodeParamError},
	} {
		if r := c.get("/peer/task", tc.q); r.Code != tc.code || r.Msg == "" {
			t.Errorf("/peer/task %s: %+v, want code %d", tc.name, r, tc.code)
		}
	}
	waitCDN(t, sn, reg.TaskID, 10*time.Second)
	base := sn.pieceBase + "/download/" + reg.TaskID[:3] + "/" + reg.TaskID
	for _, tc := range []struct {
		path, rng string
		status    int
	}{
		{base, "bytes=0-9", http.StatusPartialContent},
		{base, "bytes=100-200", http.StatusRequestedRangeNotSatisfiable},
		{base + ".meta", "", http.StatusNotFound},
		{sn.pieceBase + "/download/", "", http.StatusNotFound},
		{sn.pieceBase + "/download/" + reg.TaskID[:3] + "/../../logs/app.log", "", http.StatusNotFound},
		{sn.pieceBase + "/download/abc/abcdef", "", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.path, nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s (%s): HTTP %d, want %d", tc.path, tc.rng, resp.StatusCode, tc.status)
		}
		if tc.status == http.StatusPartialContent {
			if content, err := piece.Unwrap(b); err != nil || string(content) != "hello" {
				t.Errorf("the one piece of a 5-byte file: %q %v", content, err)
			}
		}
	}
	if sn.Exited() {
		t.Fatal("supernode exited on bad input")
	}
}

// Pieces are served while the CDN still runs; a SIGTERM mid-fetch leaves a
// consistent partial cache that the next start resumes with a Range request.
func TestSupernodeEarlyPiecesAndResume(t *testing.T) {
	o := newOrigin(t)
	data := randomData(24<<20, 4)
	u := o.addSlow("/slow.bin", data, 8*time.Millisecond) // ~8 MB/s: 3 s for the file
	home := t.TempDir()
	sn := startSupernode(t, home)
	c := newClient(t, sn, "127.0.0.1-11-11.000")
	reg := c.register(c.registerReq(u))

	var first types.PieceInfo
	Eventually(t, 10*time.Second, "first piece scheduled", func() bool {
		r := c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
		if ps := c.pieces(r); r.Code == types.CodePeerContinue && len(ps) > 0 {
			first = ps[0]
			return true
		}
		return false
	})
	if st := taskInfo(t, sn, reg.TaskID).CdnStatus; st != types.CDNStatusRunning {
		t.Fatalf("cdn status %s while the source is still sending, want RUNNING", st)
	}
	content := c.fetch(first)
	off := piece.ContentOffset(first.PieceNum, reg.PieceSize)
	if !bytes.Equal(content, data[off:off+int64(len(content))]) {
		t.Fatalf("early piece %d differs", first.PieceNum)
	}
	// The last piece is not written yet: the piece server refuses it.
	lastRange := piece.Range(piece.Count(int64(len(data)), reg.PieceSize)-1, reg.PieceSize, piece.WrappedLength(int64(len(data)), reg.PieceSize))
	req, _ := http.NewRequest(http.MethodGet, sn.pieceBase+"/download/"+reg.TaskID[:3]+"/"+reg.TaskID, nil)
	req.Header.Set("Range", "bytes="+lastRange)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unwritten piece: HTTP %d, want 503", resp.StatusCode)
	}
	if err := sn.Stop(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM mid-CDN: %v", err)
	}
	sn2 := startSupernode(t, home)
	c2 := newClient(t, sn2, "127.0.0.1-12-12.000")
	c2.register(c2.registerReq(u))
	got, fin := c2.download(time.Minute)
	if !bytes.Equal(got, data) || fin.Md5 != md5hex(data) {
		t.Fatal("resumed download differs")
	}
	o.mu.Lock()
	ranges := append([]string(nil), o.ranges["/slow.bin"]...)
	o.mu.Unlock()
	if len(ranges) != 1 || !strings.HasPrefix(ranges[0], "bytes=") || strings.HasPrefix(ranges[0], "bytes=0-") {
		t.Fatalf("restart did not resume with one Range request: %v", ranges)
	}
	if n := o.count("/slow.bin", 206); n != 1 {
		t.Fatalf("origin sent 206 x%d, want 1", n)
	}
}

// --cdn-pattern source: nothing cached, peers are sent to the source with
// plain ranges, each with the digest of its bytes, which the supernode
// read once from the source; the 600 carries the whole-file md5.
func TestSupernodeSourcePattern(t *testing.T) {
	o := newOrigin(t)
	data := randomData(6<<20+3, 5)
	u := o.add("/src.bin", data)
	sn := startSupernode(t, t.TempDir(), "--cdn-pattern", "source")
	c := newClient(t, sn, "127.0.0.1-13-13.000")
	reg := c.register(c.registerReq(u))
	if reg.CDNSource != types.CDNSourceSource || reg.FileLength != int64(len(data)) {
		t.Fatalf("register: %+v", reg)
	}
	waitCDN(t, sn, reg.TaskID, 20*time.Second)
	r := c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
	ps := c.pieces(r)
	if r.Code != types.CodePeerContinue || len(ps) != 2 {
		t.Fatalf("pull: %d %v", r.Code, ps)
	}
	for _, p := range ps {
		if p.Path != u || p.PieceMd5 == "" {
			t.Fatalf("source piece %+v", p)
		}
		req, _ := http.NewRequest(http.MethodGet, p.Path, nil)
		req.Header.Set("Range", "bytes="+p.Range)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		off := int64(p.PieceNum) * int64(reg.PieceSize)
		if !bytes.Equal(b, data[off:off+int64(len(b))]) || resp.StatusCode != 206 || p.PieceMd5 != piece.Md5Value(b) {
			t.Fatalf("piece %d from the source: HTTP %d, digest %s", p.PieceNum, resp.StatusCode, p.PieceMd5)
		}
		c.reportSuccess(p)
	}
	r = c.pull(types.TaskStatusRunning, types.ResultSemiSuc, ps[1].Range, ps[1].CID)
	var fd types.FinishData
	if r.Code != types.CodePeerFinish || json.Unmarshal(r.Data, &fd) != nil || fd.Md5 != md5hex(data) {
		t.Fatalf("finish: %+v", r)
	}
	if entries, _ := os.ReadDir(filepath.Join(sn.home, "repo", "download")); len(entries) != 0 {
		t.Fatalf("source pattern cached files: %v", entries)
	}
}

// A file preheat runs the CDN in the supernode without any client; a later
// client finds the task done and the source read once. An idle task then
// leaves memory (GC) while its cache file stays and is reused.
func TestSupernodePreheatAndGC(t *testing.T) {
	o := newOrigin(t)
	data := randomData(3<<20+1, 6)
	u := o.add("/pre.bin", data)
	sn := startSupernode(t, t.TempDir(), "--gc-initial-delay", "0s", "--gc-meta-interval", "200ms", "--task-expire-time", "500ms")
	if info := preheat(t, sn, u); info.Status != types.PreheatSuccess {
		t.Fatalf("preheat: %+v", info)
	}
	c := newClient(t, sn, "127.0.0.1-14-14.000")
	reg := c.register(c.registerReq(u))
	if got, _ := c.download(30 * time.Second); !bytes.Equal(got, data) {
		t.Fatal("download after preheat differs")
	}
	if n := o.count("/pre.bin", 200); n != 1 {
		t.Fatalf("origin served %d times, want 1", n)
	}
	// Idle: the task is collected from memory.
	Eventually(t, 10*time.Second, "task gc", func() bool {
		resp, err := httpc.Get(sn.apiURL + "/api/v1/tasks/" + reg.TaskID)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusInternalServerError
	})
	if _, err := os.Stat(filepath.Join(sn.home, "repo", "download", reg.TaskID[:3], reg.TaskID)); err != nil {
		t.Fatalf("cache file removed by task gc: %v", err)
	}
	c2 := newClient(t, sn, "127.0.0.1-15-15.000")
	c2.register(c2.registerReq(u))
	if got, _ := c2.download(30 * time.Second); !bytes.Equal(got, data) {
		t.Fatal("download after gc differs")
	}
	if n, n304 := o.count("/pre.bin", 200), o.count("/pre.bin", 304); n != 1 || n304 != 1 {
		t.Fatalf("after gc origin sent 200 x%d 304 x%d, want 1 and 1", n, n304)
	}
	for _, name := range []string{"dragonfly_supernode_gc_tasks_total", "dragonfly_supernode_cdn_download_size_bytes_total",
		"dragonfly_supernode_piece_server_sent_bytes_total"} {
		if v := metric(t, sn, name); v <= 0 {
			t.Errorf("%s = %v", name, v)
		}
	}
}

// Flags beat the YAML file, which beats the defaults; a named config that
// cannot be read is an error, the default path missing is not.
func TestSupernodeConfigPrecedence(t *testing.T) {
	bin := Binary(t, "supernode")
	cfg := filepath.Join(t.TempDir(), "sn.yml")
	if err := os.WriteFile(cfg, []byte("base:\n  listenPort: 9100\n  downloadPort: 9101\n  peerUpLimit: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "config", "default", "--config", cfg, "--port", "9200", "--advertise-ip", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("config default: %v\n%s", err, out)
	}
	for _, want := range []string{"listenPort: 9200", "downloadPort: 9101", "peerUpLimit: 7", "peerDownLimit: 4", "advertiseIP: 127.0.0.1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{
		{"--config", filepath.Join(t.TempDir(), "missing.yml")},
		{"--port", "0"},
		{"--advertise-ip", "not-an-ip"},
		{"--cdn-pattern", "p2p"},
	} {
		// A daemon that wrongly starts is killed after 10 s and fails the check.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(args, "--home-dir", t.TempDir())...)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.HasPrefix(string(out), "supernode: ") {
			t.Errorf("%v: want a clear error and a non-zero exit, got %v %q", args, err, out)
		}
	}
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "supernode version ") {
		t.Errorf("version: %v %q", err, out)
	}
}

// A finished preheat's record expires (its ID answers 404, a new POST
// starts it again), GET /preheats lists v1's PreheatTask structs, and a
// full record pool answers 503.
func TestSupernodePreheatExpiresAndBounds(t *testing.T) {
	o := newOrigin(t)
	u := o.add("/exp.bin", randomData(1<<20, 7))
	sn := startSupernode(t, t.TempDir(), "--preheat-expire-time", "3s", "--preheat-max-records", "1")
	if info := preheat(t, sn, u); info.Status != types.PreheatSuccess {
		t.Fatalf("preheat: %+v", info)
	}
	resp, err := httpc.Get(sn.apiURL + "/preheats")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]json.RawMessage
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %d", err, len(list))
	}
	for _, k := range []string{"ID", "URL", "Type", "Filter", "Identifier", "Headers", "ParentID", "Children", "Status",
		"StartTime", "FinishTime", "ErrorMsg"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("list element lacks v1's %s: %v", k, list[0])
		}
	}
	var times struct{ StartTime, FinishTime int64 }
	raw, _ := json.Marshal(list[0])
	// Unix milliseconds are 13 digits until 2286.
	if err := json.Unmarshal(raw, &times); err != nil || len(list[0]) != 12 || times.StartTime < 1e12 || times.StartTime >= 1e13 ||
		times.FinishTime < times.StartTime || times.FinishTime >= 1e13 {
		t.Errorf("list element %s: want v1's 12 keys and times in Unix milliseconds (%v)", raw, err)
	}
	resp, err = httpc.Post(sn.apiURL+"/preheats", "application/json", strings.NewReader(`{"type":"file","url":"`+u+`?other"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("preheat beyond --preheat-max-records: HTTP %d, want 503", resp.StatusCode)
	}
	var id string
	_ = json.Unmarshal(list[0]["ID"], &id)
	Eventually(t, 10*time.Second, "preheat record expiry", func() bool {
		resp, err := httpc.Get(sn.apiURL + "/preheats/" + id)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	})
	if info := preheat(t, sn, u); info.Status != types.PreheatSuccess {
		t.Fatalf("preheat after expiry: %+v", info)
	}
}

// cacheHome is a supernode home on a 64 MiB ext4 of its own when this host
// can mount one (root, mkfs.ext4: CI's), else a temporary directory; small
// says which.
func cacheHome(t *testing.T) (home string, small bool) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil || os.Geteuid() != 0 {
		return t.TempDir(), false
	}
	return disktest.Ext4(t, 64), true
}

// fillTo writes a filler file into dir's file system until about free
// bytes are left.
func fillTo(t *testing.T, dir string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	n := int64(st.Bavail)*st.Bsize - free
	if n <= 0 {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "filler"), make([]byte, n), 0o600); err != nil {
		t.Fatal(err)
	}
}
