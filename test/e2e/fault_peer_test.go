package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// fakeHolder starts h as a peer server on ip (port in the supernode's
// accepted range), registers it for url and claims every piece with
// /peer/piece/suc, so the supernode offers it as a holder of all pieces.
func fakeHolder(t *testing.T, sn *supernode, url, ip string, size int64, h http.Handler) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	var l net.Listener
	var port int
	var err error
	for i := 0; i < 20 && l == nil; i++ {
		port = 15000 + (FreePort(t)+i*7919)%50000
		l, err = listenOn(ip, port)
	}
	if l == nil {
		t.Fatalf("cannot listen for the fake holder: %v", err)
	}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, sn, ip+"-fake")
	req := c.registerReq(url)
	req.IP, req.Port, req.Path = ip, port, "/peer/file/fake"
	status, body := c.registerRaw(req)
	var env struct {
		Data types.RegisterResponseData `json:"data"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &env) != nil {
		t.Fatalf("fake holder register: %d %s", status, body)
	}
	wrapped := piece.WrappedLength(size, env.Data.PieceSize)
	for i := range piece.Count(size, env.Data.PieceSize) {
		q := fmt.Sprintf("%s/peer/piece/suc?taskId=%s&cid=%s&dstCid=%s&pieceRange=%s", sn.apiURL, env.Data.TaskID, c.cid,
			types.SuperNodeCIDPrefix+"127.0.0.1~"+env.Data.TaskID, piece.Range(i, env.Data.PieceSize, wrapped))
		resp, err := http.Get(q)
		if err != nil {
			t.Fatal(err)
		}
		var res types.ResultInfo
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		// A refused claim would leave the fake holding nothing, and the
		// test that relies on it with nothing to detect. v1 answers an
		// accepted claim with 611, not 200.
		if err != nil || resp.StatusCode != http.StatusOK || res.Code != types.CodeGetPieceReport {
			t.Fatalf("fake holder: /peer/piece/suc of piece %d: %d %+v %v", i, resp.StatusCode, res, err)
		}
	}
}

// zeroHolder answers a piece range of n bytes with size(n) zero bytes and
// a matching Content-Length: wrong bytes that only a digest or a length
// check shows. It counts the requests in hits.
func zeroHolder(hits *atomic.Int64, size func(n int64) int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		s, e, err := piece.ParseRange(strings.TrimPrefix(r.Header.Get("Range"), "bytes="))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n := size(e - s + 1)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(make([]byte, n))
	})
}

// warmUp downloads url once with a dfget whose peer server is then killed,
// so the task is complete and only the supernode (or source) holds it.
func warmUp(t *testing.T, sn *supernode, url string) {
	t.Helper()
	warm := newDfgetPeer(t, "127.0.0.2")
	if r := warm.run(sn, "-u", url, "-o", filepath.Join(t.TempDir(), "warm"), "--notbs"); r.code != 0 {
		t.Fatalf("warm-up: exit %d %s", r.code, r.stdout)
	}
	warm.killServer()
}

// failuresFrom counts the pieces a dfget (by its log) failed to fetch
// from holders at ip, and the piece errors it reported.
func failuresFrom(t *testing.T, p *dfgetPeer, ip string) (failed, reported int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.home, "logs", "dfclient.log"))
	if err != nil {
		t.Fatal(err)
	}
	failed = len(regexp.MustCompile(`piece \d+ from \S+ \(`+regexp.QuoteMeta(ip)+`:\d+\)`).FindAllIndex(b, -1))
	return failed, strings.Count(string(b), "reported FILE_")
}

// downLimit is the supernode's default --down-limit: pieces a client has in
// flight, so the most a bad holder can be handed before its first failure
// is reported.
const downLimit = 4

// A holder that serves truncated pieces (half the range, with a matching
// Content-Length, so only the md5 shows it): every client detects it,
// reports it through /peer/piece/error and is not sent to it again (at
// most downLimit pieces, those in flight before its first failure); once
// it failed eliminationLimit (5) times no client is sent to it at all.
// Every file is correct.
func TestFaultTruncatingPeer(t *testing.T) {
	o := newOrigin(t)
	size := 32 << 20
	data := randomData(size, 111)
	url := o.add("/trunc.bin", data)
	sn := startSupernode(t, t.TempDir())
	warmUp(t, sn, url) // only the CDN and the liar hold pieces now
	var hits atomic.Int64
	fakeHolder(t, sn, url, "127.0.0.5", int64(size), zeroHolder(&hits, func(n int64) int64 { return n / 2 }))
	total := 0
	for i := range 4 {
		p := newDfgetPeer(t, "127.0.0."+strconv.Itoa(10+i))
		dst := filepath.Join(t.TempDir(), "out")
		before := hits.Load()
		if r := p.run(sn, "-u", url, "-o", dst, "--notbs"); r.code != 0 {
			t.Fatalf("client %d: exit %d %s", i, r.code, r.stdout)
		}
		fileEquals(t, dst, data)
		got := int(hits.Load() - before)
		failed, reported := failuresFrom(t, p, "127.0.0.5")
		t.Logf("client %d: liar served %d pieces, %d failed, %d reported; liar failures before this client %d", i, got, failed, reported, total)
		switch {
		case got > downLimit:
			t.Errorf("client %d was sent to the liar %d times, want at most %d (not again after a failure)", i, got, downLimit)
		case got > 0 && reported == 0:
			t.Errorf("client %d: truncated pieces not reported", i)
		case total >= 5 && got > 0:
			t.Errorf("client %d: the liar failed %d times before, yet was scheduled again", i, total)
		}
		total += got
	}
	if total == 0 {
		t.Fatal("the supernode never scheduled the fake holder; nothing was tested")
	}
	if n := metricValue(t, sn, `dragonfly_supernode_pieces_failed_total{holder="peer"}`); n < float64(total) {
		t.Errorf("pieces_failed_total{holder=peer} = %v, want >= %d", n, total)
	}
}

// A seed's peer server is killed while others download from it, and more
// clients come later: each finishes with the exact file, each is sent to
// the dead seed for at most downLimit pieces, and the first failed piece
// makes the supernode probe the seed's server, find it refusing
// connections and stop scheduling it: the later clients are never sent
// there.
func TestFaultDeadPeerNotScheduled(t *testing.T) {
	o := newOrigin(t)
	data := randomData(48<<20, 112)
	url := o.add("/dead.bin", data)
	sn := startSupernode(t, t.TempDir())
	seed := newDfgetPeer(t, "127.0.0.2")
	if r := seed.run(sn, "-u", url, "-o", filepath.Join(t.TempDir(), "seed"), "--notbs"); r.code != 0 {
		t.Fatalf("seed: exit %d %s", r.code, r.stdout)
	}
	out := t.TempDir()
	var wg sync.WaitGroup
	peers := make([]*dfgetPeer, 9)
	runs := make([]dfgetRun, len(peers))
	for i := range peers {
		peers[i] = newDfgetPeer(t, "127.0.0."+strconv.Itoa(10+i))
	}
	// Two start at once and lose the seed mid-download...
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = peers[i].run(sn, "-u", url, "-o", filepath.Join(out, strconv.Itoa(i)), "--notbs", "--locallimit", "48MB")
		}()
	}
	if seed.serverPid() == 0 {
		t.Fatal("seed has no peer server")
	}
	time.Sleep(300 * time.Millisecond)
	seed.killServer()
	wg.Wait()
	// ...the others come after it died.
	for i := 2; i < len(peers); i++ {
		runs[i] = peers[i].run(sn, "-u", url, "-o", filepath.Join(out, strconv.Itoa(i)), "--notbs")
	}
	total, late := 0, 0
	for i, r := range runs {
		if r.code != 0 {
			t.Fatalf("client %d: exit %d %s", i, r.code, r.stdout)
		}
		fileEquals(t, filepath.Join(out, strconv.Itoa(i)), data)
		failed, _ := failuresFrom(t, peers[i], "127.0.0.2")
		t.Logf("client %d: %d failed fetches from the dead seed (late failures before: %d)", i, failed, late)
		if failed > downLimit {
			t.Errorf("client %d was sent to the dead seed %d times, want at most %d", i, failed, downLimit)
		}
		if i >= 2 && failed > 0 {
			t.Errorf("client %d came after the seed's server died and failed, yet was sent there %d times", i, failed)
		}
		total += failed
		if i >= 2 {
			late += failed
		}
	}
	if total == 0 {
		t.Fatal("no client was sent to the dead seed; nothing was tested")
	}
	if n := metricValue(t, sn, `dragonfly_supernode_pieces_failed_total{holder="peer"}`); n < float64(total) {
		t.Errorf("pieces_failed_total{holder=peer} = %v, want >= %d failed fetches", n, total)
	}
}
