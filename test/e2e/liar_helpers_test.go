package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// fakePeer is a peer written in the test: it speaks the supernode's open
// dfget API exactly as a dfget does (registration, /peer/task,
// /peer/piece/suc) and runs its own piece server, whose answers content
// decides. It is the building block of the lying and the semi-success
// peers of the integrity swarm tests.
type fakePeer struct {
	sn      *supernode
	ip      string
	port    int
	cid     string
	name    string // task file name, the last element of the served path
	reg     types.RegisterResponseData
	content pieceContent
	lacks   func(num int) bool // whether the peer does not really have piece num

	hits  atomic.Int64 // piece requests
	early atomic.Int64 // of those, for pieces the peer did not have
}

// pieceContent returns the content bytes of piece num (n of them) that a
// fake peer's piece server sends, or ok=false for a 404.
type pieceContent func(num int, n int64) (b []byte, ok bool)

// newFakePeer starts the piece server of a fake peer on ip (its own
// loopback address, like a dfget host) and stops it at cleanup.
func newFakePeer(t *testing.T, sn *supernode, ip string, content pieceContent, lacks func(int) bool) *fakePeer {
	t.Helper()
	l, err := listenOn(ip, 0)
	if err != nil {
		t.Fatalf("fake peer %s: listen: %v", ip, err)
	}
	f := &fakePeer{sn: sn, ip: ip, port: l.Addr().(*net.TCPAddr).Port, content: content, lacks: lacks,
		cid: fmt.Sprintf("%s-%d-%d", ip, os.Getpid(), time.Now().UnixNano()/1e6)}
	f.name = "fake-" + strings.ReplaceAll(f.cid, ".", "_")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

// raw tells whether the task's pieces are plain source ranges (the
// supernode's source pattern) rather than wrapped pieces.
func (f *fakePeer) raw() bool { return f.reg.CDNSource == types.CDNSourceSource }

// serve answers a piece request the way a dfget peer server does: Range
// in wrapped coordinates (plain ones with `cdnSource: source`) and the
// pieceNum and pieceSize headers; 206 with a well-formed wrapped piece of
// exactly the requested length. It reads the piece geometry from the
// request only, never from the registration.
func (f *fakePeer) serve(w http.ResponseWriter, r *http.Request) {
	s, e, err := piece.ParseRange(strings.TrimPrefix(r.Header.Get("Range"), "bytes="))
	num, nerr := strconv.Atoi(r.Header.Get("pieceNum"))
	size, serr := strconv.Atoi(r.Header.Get("pieceSize"))
	raw := r.Header.Get("cdnSource") == types.CDNSourceSource
	n := e - s + 1
	if !raw {
		n -= piece.WrapSize
	}
	if err != nil || nerr != nil || serr != nil || num < 0 || size <= piece.WrapSize || n < 0 {
		http.Error(w, "bad piece request", http.StatusBadRequest)
		return
	}
	f.hits.Add(1)
	if f.lacks(num) {
		f.early.Add(1)
	}
	content, ok := f.content(num, n)
	if !ok {
		http.NotFound(w, r)
		return
	}
	body := content
	if !raw {
		body = piece.Wrap(make([]byte, 0, n+piece.WrapSize), content, int32(size))
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", s, e))
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(body)
}

// register posts the registration a dfget of version 1.0.6 sends for
// rawURL, with this peer's address and piece server port.
func (f *fakePeer) register(rawURL string) error {
	req := types.RegisterRequest{RawURL: rawURL, TaskURL: rawURL, CID: f.cid, IP: f.ip, HostName: "host-" + f.ip,
		Port: f.port, Path: types.PeerFilePathPrefix + f.name, Version: "1.0.6", SuperNodeIP: "127.0.0.1",
		CallSystem: "e2e"}
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.sn.apiURL+"/peer/registry", bytes.NewReader(b))
	hr.Header.Set("Content-Type", "application/json;charset=utf-8")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return fmt.Errorf("register %s: %w", f.cid, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Code int                        `json:"code"`
		Data types.RegisterResponseData `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &env) != nil || env.Code != types.CodeSuccess {
		return fmt.Errorf("register %s: HTTP %d %s", f.cid, resp.StatusCode, body)
	}
	f.reg = env.Data
	return nil
}

// pieceCount is the task's number of pieces (of the wrapped file, or of the
// plain source in the source pattern).
func (f *fakePeer) pieceCount() int {
	if f.raw() {
		ps := int64(f.reg.PieceSize)
		return int((f.reg.FileLength + ps - 1) / ps)
	}
	return piece.Count(f.reg.FileLength, f.reg.PieceSize)
}

// call does one GET on the supernode's API and decodes the envelope.
func (f *fakePeer) call(ctx context.Context, path string, q url.Values) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.sn.apiURL+path+"?"+q.Encode(), nil)
	if err != nil {
		return result{}, fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r result
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil {
		return result{}, fmt.Errorf("GET %s: HTTP %d %q", path, resp.StatusCode, body)
	}
	return r, nil
}

// pieceSuc reports the piece at rng as downloaded from dstCID
// (/peer/piece/suc).
func (f *fakePeer) pieceSuc(ctx context.Context, rng, dstCID string) error {
	r, err := f.call(ctx, "/peer/piece/suc", url.Values{"taskId": {f.reg.TaskID}, "cid": {f.cid}, "dstCid": {dstCID},
		"pieceRange": {rng}})
	if err == nil && r.Code != types.CodeGetPieceReport {
		err = fmt.Errorf("piece/suc %s: code %d %s", rng, r.Code, r.Msg)
	}
	return err
}

// pull is one /peer/task call; it returns the code and the pieces of a 601.
func (f *fakePeer) pull(ctx context.Context, status, res int, rng, dstCID string) (int, []types.PieceInfo, error) {
	r, err := f.call(ctx, "/peer/task", url.Values{"taskId": {f.reg.TaskID}, "srcCid": {f.cid}, "dstCid": {dstCID},
		"status": {strconv.Itoa(status)}, "result": {strconv.Itoa(res)}, "range": {rng}})
	if err != nil {
		return 0, nil, err
	}
	var ps []types.PieceInfo
	if r.Code == types.CodePeerContinue && len(r.Data) > 0 && string(r.Data) != "null" {
		if err := json.Unmarshal(r.Data, &ps); err != nil {
			return 0, nil, fmt.Errorf("601 data: %w", err)
		}
	}
	return r.Code, ps, nil
}

// startLiar registers a lying peer for rawURL and makes it look like a
// dfget that downloaded the whole file at once: it runs the pull loop and
// reports every piece it is offered as fetched (/peer/piece/suc, then
// /peer/task result=501), without fetching a byte. Its piece server sends
// well-wrapped pieces of the right length whose content is wrong: random
// bytes, or zeros when zeros is set.
func startLiar(t *testing.T, sn *supernode, ip, rawURL string, zeros bool) *fakePeer {
	t.Helper()
	f := newFakePeer(t, sn, ip, func(num int, n int64) ([]byte, bool) {
		if zeros {
			return make([]byte, n), true
		}
		return randomData(int(n), 0xbad0000+uint64(num)), true
	}, func(int) bool { return true })
	if err := f.register(rawURL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var claimed, refused int
	err := f.pullLoop(ctx, func(ctx context.Context, p types.PieceInfo) int {
		if err := f.pieceSuc(ctx, p.Range, p.CID); err != nil {
			refused++
			t.Logf("liar: %v", err)
		}
		claimed++
		return types.ResultSuc
	})
	if err != nil {
		t.Fatalf("liar: %v", err)
	}
	t.Logf("liar %s (cid %s) claimed %d of %d pieces of task %s (%d claims refused) and got 600", ip, f.cid, claimed,
		f.pieceCount(), f.reg.TaskID, refused)
	return f
}

// pullLoop is a dfget's pull loop: one /peer/task per finished piece,
// carrying the result handle returns for it, until the supernode answers
// 600 (nil) or a call fails.
func (f *fakePeer) pullLoop(ctx context.Context, handle func(context.Context, types.PieceInfo) int) error {
	code, queue, err := f.pull(ctx, types.TaskStatusStart, types.ResultInvalid, "", "")
	for err == nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pull loop of %s: %w", f.cid, ctx.Err())
		}
		if len(queue) == 0 {
			if code == types.CodePeerFinish {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
			code, queue, err = f.pull(ctx, types.TaskStatusStart, types.ResultInvalid, "", "")
			continue
		}
		p := queue[0]
		queue = queue[1:]
		res := handle(ctx, p)
		var more []types.PieceInfo
		code, more, err = f.pull(ctx, types.TaskStatusRunning, res, p.Range, p.CID)
		queue = append(queue, more...)
	}
	return err
}

// semiPeer behaves as a Dragonfly 1.x dfget whose pieces sit in memory
// before they reach its file: it fetches each piece for real, reports it
// to the supernode with `/peer/task ...&result=503` (SEMISUC) at once, and
// only after writeDelay "writes" it and calls /peer/piece/suc. Until then
// its piece server sends what a v1 peer server reads from the file's hole:
// a well-wrapped piece of zeros, or a 404 when notFound is set.
type semiPeer struct {
	*fakePeer
	writeDelay time.Duration

	mu       sync.Mutex
	written  map[int][]byte
	reported int       // pieces reported with 503
	firstSuc time.Time // when the first piece was written and reported
	err      error     // first protocol error of the background loop
	wg       sync.WaitGroup
}

// startSemiPeer registers the peer for rawURL and runs its download in the
// background until the supernode answers 600 or the test ends.
func startSemiPeer(t *testing.T, sn *supernode, ip, rawURL string, writeDelay time.Duration, notFound bool) *semiPeer {
	t.Helper()
	s := &semiPeer{writeDelay: writeDelay, written: map[int][]byte{}}
	s.fakePeer = newFakePeer(t, sn, ip, func(num int, n int64) ([]byte, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if b, ok := s.written[num]; ok && int64(len(b)) == n {
			return b, true
		}
		return make([]byte, n), !notFound
	}, func(num int) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.written[num]
		return !ok
	})
	if err := s.register(rawURL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); s.wg.Wait() })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.download(ctx); err != nil && ctx.Err() == nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
		}
	}()
	return s
}

// download fetches each offered piece for real and reports it with
// result=503, as a v1 dfget does while the piece is still in memory.
func (s *semiPeer) download(ctx context.Context) error {
	return s.pullLoop(ctx, func(ctx context.Context, p types.PieceInfo) int {
		content, err := s.fetch(ctx, p)
		if err != nil {
			return types.ResultFail
		}
		s.afterWrite(ctx, p, content)
		return types.ResultSemiSuc
	})
}

// afterWrite counts the 503 report and, writeDelay later, makes the piece
// servable and reports it with /peer/piece/suc, as the v1 writer does.
func (s *semiPeer) afterWrite(ctx context.Context, p types.PieceInfo, content []byte) {
	s.mu.Lock()
	s.reported++
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.writeDelay):
		}
		s.mu.Lock()
		s.written[p.PieceNum] = content
		if s.firstSuc.IsZero() {
			s.firstSuc = time.Now()
		}
		s.mu.Unlock()
		if err := s.pieceSuc(ctx, p.Range, p.CID); err != nil && ctx.Err() == nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
		}
	}()
}

// fetch downloads a piece from the holder the supernode named and returns
// its content, checked against pieceMd5 and the wrapper when there is one.
func (s *semiPeer) fetch(ctx context.Context, p types.PieceInfo) ([]byte, error) {
	u := p.Path
	if !strings.Contains(u, "://") {
		u = fmt.Sprintf("http://%s:%d%s", p.PeerIP, p.PeerPort, p.Path)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("piece %d: %w", p.PieceNum, err)
	}
	req.Header.Set("Range", "bytes="+p.Range)
	req.Header.Set("pieceNum", strconv.Itoa(p.PieceNum))
	req.Header.Set("pieceSize", strconv.Itoa(int(p.PieceSize)))
	if s.raw() {
		req.Header.Set("cdnSource", types.CDNSourceSource)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("piece %d: %w", p.PieceNum, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusPartialContent {
		return nil, fmt.Errorf("piece %d: HTTP %d: %v", p.PieceNum, resp.StatusCode, err)
	}
	if p.PieceMd5 != "" && !md5Matches(b, p.PieceMd5) {
		return nil, fmt.Errorf("piece %d: md5 mismatch", p.PieceNum)
	}
	if s.raw() {
		return b, nil
	}
	content, err := piece.Unwrap(b)
	if err != nil {
		return nil, fmt.Errorf("piece %d: %w", p.PieceNum, err)
	}
	return bytes.Clone(content), nil
}

// state returns how many pieces were reported with 503, when the first was
// written (zero if none yet) and the first error of the background loop.
func (s *semiPeer) state() (reported int, firstSuc time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reported, s.firstSuc, s.err
}
