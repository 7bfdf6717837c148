package core

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// fakeSupernode speaks the supernode side of the dfget protocol for one
// task whose CDN copy is complete from the start. It serves CDN pieces
// itself on /download/ and schedules, per client, up to 4 pieces at a
// time that the client has not reported, from a holder chosen by pick.
type fakeSupernode struct {
	t       *testing.T
	srv     *httptest.Server
	content []byte
	size    int32
	wrapped []byte
	md5     string

	mu      sync.Mutex
	clients map[string]*fakeClient // by cid
	holders map[int][]string       // piece -> cids that reported it
	errors  []string
	metrics int
	down    []string
	corrupt map[int]bool // CDN pieces served corrupted once
	cdnHits int
	// failTask makes /peer/task answer 500, failAfter once a client has
	// that many pieces (0: never); refuse makes register fail.
	failTask  bool
	failAfter int
	// served counts CDN pieces sent; startPiece is the last register's
	// startPiece, which this fake ignores as a Dragonfly 1.x one does,
	// unless honourStart: then, as an older Damselfly one did, the pieces
	// before it count as had and are never offered.
	served      map[int]int
	startPiece  int
	honourStart bool
	// unshared are the pieces reported with share=0, which make no one
	// a holder (as on ours).
	unshared map[int]bool
	refuse   func() bool
	pulls    int
	// forgetAt makes the pull with that number find every client gone
	// (code 502), as after the task was dropped; forgetEvery repeats it
	// every that many pulls. registers counts registrations.
	forgetAt, forgetEvery int
	registers             int
	// noStream makes /peer/piece/stream a missing route (HTTP 404), as on
	// a Dragonfly 1.x supernode; streamReqs counts its requests by method
	// and patterns the registrations' patterns.
	noStream   bool
	streamReqs map[string]int
	patterns   []string
	peerAddr   map[string]string // cid -> ip:port
	peerPath   map[string]string
	// blake3 makes this fake a Damselfly supernode that gives a BLAKE3
	// pieceDigest to clients that ask; without it, it is a 1.x one that
	// ignores the field. digests records what each registration asked for.
	blake3  bool
	asked   map[string]bool // cid -> asked for blake3
	digests []string
	// noPieceMd5 offers pieces without any digest; noFinishMd5 finishes
	// (600) without the file's md5.
	noPieceMd5, noFinishMd5 bool
	// unknownLength registers with file length -1, as for a chunked
	// source whose length the supernode does not know yet.
	unknownLength bool
	// failed is set once failAfter made /peer/task fail.
	failed bool
	// source, when set, makes this fake a supernode of the source
	// pattern (newFakeSourceSupernode): pieces are raw ranges of the
	// file, to be fetched from this URL, with no pieceMd5.
	source string
}

type fakeClient struct {
	done    map[int]bool
	running map[int]bool
	window  int
}

func newFakeSupernode(t *testing.T, content []byte) *fakeSupernode {
	return newFakeSupernodeSize(t, content, piece.ComputeSize(int64(len(content))))
}

// newFakeSourceSupernode is a fake supernode of the source pattern for
// the file content at url: a Dragonfly 1.x one offers its pieces without
// a digest, a Damselfly one (blake3) with the BLAKE3 of the raw range.
func newFakeSourceSupernode(t *testing.T, content []byte, url string) *fakeSupernode {
	f := newFakeSupernode(t, content)
	f.source, f.wrapped = url, content
	return f
}

// newFakeSupernodeSize is newFakeSupernode cutting pieces of size bytes.
func newFakeSupernodeSize(t *testing.T, content []byte, size int32) *fakeSupernode {
	f := &fakeSupernode{t: t, content: content, size: size,
		clients: map[string]*fakeClient{}, holders: map[int][]string{}, corrupt: map[int]bool{},
		peerAddr: map[string]string{}, peerPath: map[string]string{}, served: map[int]int{}, streamReqs: map[string]int{},
		asked: map[string]bool{}, unshared: map[int]bool{}}
	n := piece.Count(int64(len(content)), f.size)
	for i := 0; i < n; i++ {
		off := piece.ContentOffset(i, f.size)
		l := piece.ContentLength(i, int64(len(content)), f.size)
		f.wrapped = piece.Wrap(f.wrapped, content[off:off+l], f.size)
	}
	sum := md5.Sum(content)
	f.md5 = hex.EncodeToString(sum[:])
	mux := http.NewServeMux()
	mux.HandleFunc("/peer/registry", f.register)
	mux.HandleFunc("/peer/task", f.task)
	mux.HandleFunc("/peer/piece/suc", f.suc)
	mux.HandleFunc("/peer/piece/error", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.errors = append(f.errors, r.URL.RawQuery)
		f.mu.Unlock()
	})
	mux.HandleFunc("/peer/service/down", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.down = append(f.down, r.URL.Query().Get("cid"))
		f.mu.Unlock()
		reply(w, types.ResultInfo{Code: types.CodeGetPeerDown})
	})
	mux.HandleFunc("/peer/piece/stream", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.streamReqs[r.Method]++
		no := f.noStream
		f.mu.Unlock()
		if no {
			http.NotFound(w, r)
			return
		}
		reply(w, types.ResultInfo{Code: types.CodeGetPieceReport})
	})
	mux.HandleFunc("/task/metrics", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.metrics++
		f.mu.Unlock()
		w.Write([]byte("null\n"))
	})
	mux.HandleFunc("/download/task", f.download)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeSupernode) node() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeSupernode) register(w http.ResponseWriter, r *http.Request) {
	var req types.RegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.CID == "" || req.RawURL == "" {
		w.WriteHeader(500)
		reply(w, types.ErrorResponse{Code: 500, Message: "bad register"})
		return
	}
	if f.refuse != nil && f.refuse() {
		w.WriteHeader(500)
		reply(w, types.ErrorResponse{Code: 500, Message: "not now"})
		return
	}
	f.mu.Lock()
	f.registers++
	f.patterns = append(f.patterns, req.Pattern)
	c := &fakeClient{done: map[int]bool{}, running: map[int]bool{}}
	f.startPiece = req.StartPiece
	f.digests = append(f.digests, req.PieceDigest)
	f.asked[req.CID] = req.PieceDigest == "blake3"
	if req.StreamMode {
		c.window = req.WindowSize
		for i := 0; f.honourStart && i < req.StartPiece; i++ {
			c.done[i] = true
		}
	}
	f.clients[req.CID] = c
	delete(f.peerAddr, req.CID)
	// A cdn-pattern client is never a holder, as in Dragonfly 1.x.
	if req.Port != 0 && req.Pattern != "cdn" {
		f.peerAddr[req.CID] = net.JoinHostPort(req.IP, strconv.Itoa(req.Port))
		f.peerPath[req.CID] = req.Path
	}
	length := int64(len(f.content))
	if f.unknownLength {
		length = -1
	}
	cdnSource := types.CDNSourceSupernode
	if f.source != "" {
		cdnSource = types.CDNSourceSource
	}
	f.mu.Unlock()
	reply(w, types.ResultInfo{Code: 200, Data: types.RegisterResponseData{TaskID: "task", FileLength: length,
		PieceSize: f.size, CDNSource: cdnSource}})
}

func (f *fakeSupernode) pieces() int {
	if f.source != "" {
		return max(1, (len(f.content)+int(f.size)-1)/int(f.size))
	}
	return piece.Count(int64(len(f.content)), f.size)
}

func (f *fakeSupernode) task(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls++
	if f.pulls == f.forgetAt || (f.forgetEvery > 0 && f.pulls%f.forgetEvery == 0) {
		f.clients, f.holders = map[string]*fakeClient{}, map[int][]string{}
	}
	if f.failTask {
		reply(w, types.ResultInfo{Code: types.CodeSystemError, Msg: "broken"})
		return
	}
	c := f.clients[q.Get("srcCid")]
	if c == nil {
		reply(w, types.ResultInfo{Code: types.CodeTargetNotFound})
		return
	}
	if rg := q.Get("range"); rg != "" {
		num, err := piece.NumFromRange(rg, f.size)
		if err != nil {
			reply(w, types.ResultInfo{Code: types.CodeParamError})
			return
		}
		delete(c.running, num)
		if q.Get("result") == "501" || q.Get("result") == "503" {
			c.done[num] = true
		}
	}
	if f.failAfter > 0 && len(c.done) >= f.failAfter {
		f.failed = true
		reply(w, types.ResultInfo{Code: types.CodeSystemError, Msg: "broken"})
		return
	}
	if len(c.done) == f.pieces() {
		fin := types.FinishData{Md5: f.md5, FileLength: int64(len(f.wrapped))}
		if f.noFinishMd5 {
			fin.Md5 = ""
		}
		reply(w, types.ResultInfo{Code: types.CodePeerFinish, Data: fin})
		return
	}
	una := 0
	for c.done[una] {
		una++
	}
	var out []types.PieceInfo
	for i := 0; i < f.pieces() && len(c.running)+len(out) < 4; i++ {
		if c.done[i] || c.running[i] || (c.window > 0 && i >= una+c.window) {
			continue
		}
		out = append(out, f.holder(i, f.blake3 && f.asked[q.Get("srcCid")]))
	}
	if len(out) == 0 {
		if len(c.running) > 0 {
			reply(w, types.ResultInfo{Code: types.CodePeerContinue})
			return
		}
		reply(w, types.ResultInfo{Code: types.CodePeerWait})
		return
	}
	for _, p := range out {
		c.running[p.PieceNum] = true
	}
	reply(w, types.ResultInfo{Code: types.CodePeerContinue, Data: out})
}

// holder prefers a peer that has the piece, else the CDN; withBlake3 adds
// the piece's BLAKE3 digest. Caller holds mu.
func (f *fakeSupernode) holder(i int, withBlake3 bool) types.PieceInfo {
	rg := piece.Range(i, f.size, int64(len(f.wrapped)))
	s, e, _ := piece.ParseRange(rg)
	p := types.PieceInfo{Range: rg, PieceNum: i, PieceSize: f.size, PieceMd5: piece.Md5Value(f.wrapped[s : e+1])}
	if f.noPieceMd5 || f.source != "" {
		p.PieceMd5 = ""
	}
	if withBlake3 {
		p.PieceDigest = digest.Sum(digest.BLAKE3, f.wrapped[s:e+1]).String()
	}
	for _, cid := range f.holders[i] {
		if addr, ok := f.peerAddr[cid]; ok {
			host, port, _ := net.SplitHostPort(addr)
			p.CID, p.PeerIP, p.Path = cid, host, f.peerPath[cid]
			p.PeerPort, _ = strconv.Atoi(port)
			return p
		}
	}
	host, port, _ := net.SplitHostPort(f.node())
	p.CID, p.PeerIP, p.Path = types.SuperNodeCIDPrefix+"x~task", host, "/download/task"
	p.PeerPort, _ = strconv.Atoi(port)
	if f.source != "" {
		p.Path = f.source
	}
	return p
}

func (f *fakeSupernode) suc(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	num, err := piece.NumFromRange(q.Get("pieceRange"), f.size)
	if err != nil {
		reply(w, types.ResultInfo{Code: types.CodeParamError})
		return
	}
	f.mu.Lock()
	c := f.clients[q.Get("cid")]
	if c == nil {
		// As a supernode does: a report from a client it does not know
		// (any more) makes nobody a holder.
		f.mu.Unlock()
		reply(w, types.ResultInfo{Code: types.CodeTargetNotFound})
		return
	}
	c.done[num] = true
	delete(c.running, num)
	if q.Get("share") == "0" {
		f.unshared[num] = true
	} else {
		f.holders[num] = append(f.holders[num], q.Get("cid"))
	}
	f.mu.Unlock()
	reply(w, types.ResultInfo{Code: types.CodeGetPieceReport})
}

func (f *fakeSupernode) download(w http.ResponseWriter, r *http.Request) {
	s, e, err := piece.ParseRange(strings.TrimPrefix(r.Header.Get("Range"), "bytes="))
	if err != nil || e >= int64(len(f.wrapped)) {
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	b := append([]byte(nil), f.wrapped[s:e+1]...)
	f.mu.Lock()
	f.cdnHits++
	f.served[int(s/int64(f.size))]++
	if num := int(s / int64(f.size)); f.corrupt[num] {
		delete(f.corrupt, num)
		b[len(b)/2] ^= 0xFF
	}
	f.mu.Unlock()
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(b)
}

// lastCID is the one registered client's CID. Caller holds mu.
func (f *fakeSupernode) lastCID() string {
	for cid := range f.clients {
		return cid
	}
	return ""
}
