package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// fetchWrapped downloads a piece from the holder a 601 named and returns
// the bytes exactly as served for its range.
func fetchWrapped(t *testing.T, p types.PieceInfo) []byte {
	t.Helper()
	u := fmt.Sprintf("http://%s:%d%s", p.PeerIP, p.PeerPort, p.Path)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Range", "bytes="+p.Range)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("fetch piece %d: %v", p.PieceNum, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("fetch piece %d: HTTP %d %s", p.PieceNum, resp.StatusCode, b)
	}
	return b
}

// checkDigests checks one 601 piece against the bytes served for it:
// pieceDigest exactly when the client asked (for a client that did not,
// the raw JSON has no such key), and a non-empty pieceMd5 when it did not;
// a client that asked gets no pieceMd5, so no md5 is computed for it.
func checkDigests(t *testing.T, raw map[string]json.RawMessage, p types.PieceInfo, asked bool, b []byte) {
	t.Helper()
	if asked && p.PieceMd5 != "" {
		t.Fatalf("piece %d: a client that asked for BLAKE3 got pieceMd5 %q", p.PieceNum, p.PieceMd5)
	}
	if !asked {
		checkPieceMd5(t, p, b)
	}
	_, has := raw["pieceDigest"]
	if !asked {
		if has {
			t.Fatalf("piece %d: a client that did not ask got pieceDigest %s", p.PieceNum, raw["pieceDigest"])
		}
		return
	}
	d, err := digest.Parse(p.PieceDigest)
	if err != nil || d.Algorithm() != digest.BLAKE3 || !strings.HasPrefix(p.PieceDigest, "blake3:") {
		t.Fatalf("piece %d: pieceDigest %q: %v", p.PieceNum, p.PieceDigest, err)
	}
	if err := d.Verify(b); err != nil {
		t.Fatalf("piece %d: pieceDigest: %v", p.PieceNum, err)
	}
}

// checkPieceMd5 checks that a piece has a non-empty pieceMd5 that matches
// the bytes served for it, as a Dragonfly 1.x dfget checks it.
func checkPieceMd5(t *testing.T, p types.PieceInfo, b []byte) {
	t.Helper()
	want, n, err := digest.ParsePieceMd5(p.PieceMd5)
	if err != nil {
		t.Fatalf("piece %d: pieceMd5 %q: %v", p.PieceNum, p.PieceMd5, err)
	}
	if err := want.Verify(b); err != nil || n != int64(len(b)) {
		t.Fatalf("piece %d: pieceMd5 %q for %d bytes: %v", p.PieceNum, p.PieceMd5, len(b), err)
	}
}

// digestDownload registers a raw client (asking for BLAKE3 when asked),
// runs its pull loop to the 600 and checks every piece of every 601
// against the bytes fetched from the piece port. It returns the content.
func digestDownload(t *testing.T, sn *supernode, cid, url string, asked bool) []byte {
	t.Helper()
	c := newClient(t, sn, cid)
	req := c.registerReq(url)
	if asked {
		req.PieceDigest = "blake3"
	}
	c.register(req)
	got := map[int][]byte{}
	deadline := time.Now().Add(time.Minute)
	r := c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
	for time.Now().Before(deadline) {
		switch r.Code {
		case types.CodePeerFinish:
			var out []byte
			for i := range len(got) {
				out = append(out, got[i]...)
			}
			checkFinishMd5(t, r, out, asked)
			return out
		case types.CodePeerContinue:
			ps, raws := c.pieces(r), []map[string]json.RawMessage{}
			if err := json.Unmarshal(r.Data, &raws); err != nil && len(ps) > 0 {
				t.Fatalf("601 data: %v", err)
			}
			for i, p := range ps {
				b := fetchWrapped(t, p)
				checkDigests(t, raws[i], p, asked, b)
				content, err := piece.Unwrap(b)
				if err != nil {
					t.Fatalf("piece %d: %v", p.PieceNum, err)
				}
				got[p.PieceNum] = content
				c.reportSuccess(p)
			}
			if len(ps) == 0 {
				r = c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
				continue
			}
			last := ps[len(ps)-1]
			r = c.pull(types.TaskStatusRunning, types.ResultSemiSuc, last.Range, last.CID)
		case types.CodePeerWait:
			time.Sleep(20 * time.Millisecond)
			r = c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
		default:
			t.Fatalf("/peer/task: %+v", r)
		}
	}
	t.Fatal("download did not finish in a minute")
	return nil
}

// checkFinishMd5 checks the 600's md5: the md5 of the file for a client
// that did not ask for BLAKE3 (a Dragonfly 1.x dfget checks the file
// against it), the md5 or none for one that asked.
func checkFinishMd5(t *testing.T, r result, content []byte, asked bool) {
	t.Helper()
	var fd types.FinishData
	if err := json.Unmarshal(r.Data, &fd); err != nil {
		t.Fatalf("600 data: %v", err)
	}
	if fd.Md5 != md5hex(content) && (!asked || fd.Md5 != "") {
		t.Fatalf("600 md5 %q, want %s (blake3 asked %v)", fd.Md5, md5hex(content), asked)
	}
}

// blake3Sidecars lists the .blake3 sidecars under a supernode home.
func blake3Sidecars(t *testing.T, home string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".blake3") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BLAKE3 piece digests through the real supernode, with raw HTTP clients:
// a client that registers with pieceDigest "blake3" gets a pieceDigest on
// every 601 piece that verifies against the bytes of the piece port; a
// client without the field (a Dragonfly 1.x dfget) never sees the key and
// gets a non-empty, correct pieceMd5 for every piece. Cold (CDN fill),
// warm (a second supernode on the same home reuses the cache), and a
// cache of the previous version (no .blake3 sidecar), which is re-hashed.
func TestIntegrityPieceDigestSupernode(t *testing.T) {
	o := newOrigin(t)
	data := randomData(3*(4<<20)+12345, 1207)
	url := o.add("/digest.bin", data)
	home := t.TempDir()
	run := func(stage string, sn *supernode) {
		for _, asked := range []bool{true, false} {
			cid := fmt.Sprintf("127.0.0.1-%s-%v", stage, asked)
			if got := digestDownload(t, sn, cid, url, asked); string(got) != string(data) {
				t.Fatalf("%s, blake3 asked %v: content differs (%d of %d bytes)", stage, asked, len(got), len(data))
			}
		}
	}

	sn := startSupernode(t, home)
	run("cold", sn)
	if err := sn.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(blake3Sidecars(t, home)); n != 1 {
		t.Fatalf("%d .blake3 sidecars after the cold run, want 1", n)
	}

	sn = startSupernode(t, home)
	run("warm", sn)
	if err := sn.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := o.count("/digest.bin", http.StatusOK); n != 1 {
		t.Fatalf("the origin sent the file %d times: the warm run did not reuse the cache", n)
	}

	// The previous version's cache: the same files without .blake3.
	for _, p := range blake3Sidecars(t, home) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	sn = startSupernode(t, home)
	run("old-cache", sn)
	if n := o.count("/digest.bin", http.StatusOK); n != 1 {
		t.Fatalf("the origin sent the file %d times: the old cache was not reused", n)
	}
	if n := len(blake3Sidecars(t, home)); n != 1 {
		t.Fatalf("%d .blake3 sidecars after reusing an old cache, want it rewritten", n)
	}
}

// A registration asking for a piece digest the supernode does not know is
// refused with a 501 naming the field, never served without a check.
func TestIntegrityPieceDigestUnknownRefused(t *testing.T) {
	o := newOrigin(t)
	url := o.add("/digest-unknown.bin", randomData(1000, 3))
	sn := startSupernode(t, t.TempDir())
	c := newClient(t, sn, "127.0.0.1-unknown")
	req := c.registerReq(url)
	req.PieceDigest = "sha256"
	_, body := c.registerRaw(req)
	var res struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Code != types.CodeParamError || !strings.Contains(res.Message, "pieceDigest") {
		t.Fatalf("register with pieceDigest sha256: %s", body)
	}
}
