package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// supernodeRSS is the resident memory of the supernode's process, in bytes.
func supernodeRSS(t *testing.T, sn *supernode) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", sn.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("supernode status: %v", err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in the supernode's status")
	return 0
}

// A registered client's reports about piece 2^40 (a failure on /peer/task,
// a success, a stream cache's note) and a peer page whose offset
// overflows are answered with an error or an empty page: the supernode
// stays up, with bounded memory, and still serves the task. (A failure
// once sized a 128 GiB bitset, a stream note a slice of 2^40 maps, and
// the page panicked in a slice expression.)
func TestSecurityHugePieceNumbers(t *testing.T) {
	o := newOrigin(t)
	data := randomData(1<<20, 91)
	u := o.add("/huge-num.bin", data)
	sn := startSupernode(t, t.TempDir())
	c := newClient(t, sn, "huge-num-client")
	c.register(c.registerReq(u))
	waitCDN(t, sn, c.taskID, 30*time.Second)

	start := (int64(1) << 62) / int64(c.size) * int64(c.size) // piece ~2^40
	rng := fmt.Sprintf("%d-%d", start, start)
	superCID := "cdnnode:127.0.0.1~" + c.taskID
	if r := c.pull(types.TaskStatusRunning, types.ResultFail, rng, superCID); r.Code == types.CodePeerContinue ||
		r.Code == types.CodePeerWait || r.Code == types.CodePeerFinish {
		t.Errorf("failure of piece %d answered %+v, want an error", start/int64(c.size), r)
	}
	if r := c.pull(types.TaskStatusRunning, types.ResultSuc, rng, superCID); r.Code == types.CodePeerContinue ||
		r.Code == types.CodePeerWait || r.Code == types.CodePeerFinish {
		t.Errorf("success of piece %d answered %+v, want an error", start/int64(c.size), r)
	}
	q := url.Values{"taskId": {c.taskID}, "cid": {c.cid}, "pieceRange": {rng}}
	resp, err := httpc.Post(sn.apiURL+"/peer/piece/stream?"+q.Encode(), "", nil)
	if err != nil {
		t.Fatalf("stream note: %v (supernode exited: %t)", err, sn.Exited())
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var r result
	if json.Unmarshal(b, &r) != nil || r.Code == types.CodeGetPieceReport {
		t.Errorf("stream note of piece 2^40: HTTP %d %s, want an error code", resp.StatusCode, b)
	}
	resp, err = httpc.Get(sn.apiURL + "/api/v1/peers?pageNum=4611686018427387904&pageSize=2")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("peer page 2^62: HTTP %d %s, want 200 []", resp.StatusCode, b)
	}

	if sn.Exited() {
		t.Fatal("the supernode exited")
	}
	if rss := supernodeRSS(t, sn); rss > 256<<20 {
		t.Errorf("supernode resident memory %d MiB after the reports, want < 256", rss>>20)
	}
	got, _ := c.download(30 * time.Second)
	if !bytes.Equal(got, data) {
		t.Fatal("download after the reports: wrong content")
	}
}

// awaitPieceError waits until the supernode logged what it made of a piece
// error about task id: ignored, refused or the task dropped.
func awaitPieceError(t *testing.T, sn *supernode, id string) {
	t.Helper()
	Eventually(t, 10*time.Second, "piece error handled", func() bool {
		b, _ := os.ReadFile(sn.LogPath)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, id) && (strings.Contains(l, "ignored") || strings.Contains(l, "dropping the task") ||
				strings.Contains(l, "not a client")) {
				return true
			}
		}
		return false
	})
}

func pieceErrorQuery(taskID, src, errType, rng string) url.Values {
	return url.Values{"taskId": {taskID}, "srcCid": {src}, "dstCid": {"cdnnode:forged"}, "dstIp": {"127.0.0.1"},
		"errorType": {errType}, "range": {rng}}
}

func reportPieceError(t *testing.T, sn *supernode, q url.Values) {
	t.Helper()
	resp, err := httpc.Get(sn.apiURL + "/peer/piece/error?" + q.Encode())
	if err != nil {
		t.Fatalf("piece error: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("piece error: HTTP %d", resp.StatusCode)
	}
}

// Forged /peer/piece/error reports against the supernode leave a healthy
// cache alone: from a stranger, or from a client with a range that is not
// the piece's (one byte, which once failed piece 0's check; a terabyte,
// which was read whole). The next client downloads from the cache, the
// origin served the file once. A real damaged piece, reported with its
// range, still drops the cache: the next client gets the file fetched
// again.
func TestSecurityForgedPieceErrors(t *testing.T) {
	o := newOrigin(t)
	sn := startSupernode(t, t.TempDir())
	forged := []struct{ name, src, rng string }{
		{"stranger", "nobody", "0-0"},
		{"one-byte", "", "0-0"},
		{"terabyte", "", "0-999999999999"},
	}
	for i, f := range forged {
		t.Run(f.name, func(t *testing.T) { forgePieceError(t, sn, o, i, f.src, f.rng) })
	}

	// A real damaged piece, reported with the range it was offered with.
	data := randomData(1<<20, 199)
	u := o.add("/damaged.bin", data)
	a := newClient(t, sn, "victim-damaged")
	a.register(a.registerReq(u))
	if got, _ := a.download(30 * time.Second); !bytes.Equal(got, data) {
		t.Fatal("damaged: first download: wrong content")
	}
	cache := filepath.Join(sn.home, "repo", "download", a.taskID[:3], a.taskID)
	f, err := os.OpenFile(cache, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open cache: %v", err)
	}
	if _, err := f.WriteAt([]byte{^data[100]}, 4+100); err != nil { // past the 4-byte piece head
		t.Fatal(err)
	}
	f.Close()
	ti := taskInfo(t, sn, a.taskID)
	rng := "0-" + strconv.FormatInt(min(int64(a.size), ti.FileLength)-1, 10)
	reportPieceError(t, sn, pieceErrorQuery(a.taskID, a.cid, types.PieceErrorFileMd5NotMatch, rng))
	awaitPieceError(t, sn, a.taskID)
	if !sn.LogContains(a.taskID + " is damaged on disk, dropping the task") {
		t.Fatal("a damaged piece reported with its range did not drop the cache")
	}
	Eventually(t, 10*time.Second, "task dropped", func() bool {
		resp, err := httpc.Get(sn.apiURL + "/api/v1/tasks/" + a.taskID)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusOK
	})
	b := newClient(t, sn, "after-damaged")
	b.register(b.registerReq(u))
	if got, _ := b.download(30 * time.Second); !bytes.Equal(got, data) {
		t.Fatal("damaged: download after the drop: wrong content")
	}
	if n := o.count("/damaged.bin", http.StatusOK); n != 2 {
		t.Errorf("damaged: the origin served the file %d times, want 2 (fetched again)", n)
	}
}

// forgePieceError sends a forged FILE_MD5_NOT_MATCH about a new task's
// healthy cache, from src ("": a registered forger) with range rng, and
// checks the cache survives it.
func forgePieceError(t *testing.T, sn *supernode, o *origin, i int, src, rng string) {
	name := strings.TrimPrefix(t.Name(), "TestSecurityForgedPieceErrors/")
	path := "/forged-" + name + ".bin"
	data := randomData(5<<20, uint64(100+i)) // two pieces: a range over both is no piece's
	u := o.add(path, data)
	a := newClient(t, sn, "victim-"+name)
	a.register(a.registerReq(u))
	if got, _ := a.download(30 * time.Second); !bytes.Equal(got, data) {
		t.Fatal("first download: wrong content")
	}
	if src == "" {
		src = "forger-" + name
		fc := newClient(t, sn, src)
		fc.register(fc.registerReq(u))
	}
	reportPieceError(t, sn, pieceErrorQuery(a.taskID, src, types.PieceErrorFileMd5NotMatch, rng))
	awaitPieceError(t, sn, a.taskID)
	if sn.LogContains(a.taskID + " is damaged on disk, dropping the task") {
		t.Fatal("a forged report dropped the cache")
	}
	b := newClient(t, sn, "after-"+name)
	b.register(b.registerReq(u))
	if got, _ := b.download(30 * time.Second); !bytes.Equal(got, data) {
		t.Fatal("download after the report: wrong content")
	}
	if n := o.count(path, http.StatusOK); n != 1 {
		t.Errorf("the origin served the file %d times, want 1 (the cache was dropped)", n)
	}
}
