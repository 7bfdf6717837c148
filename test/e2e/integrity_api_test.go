package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
