package uploader

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// stalledPeer asks the server at addr for a piece on a connection with a
// tiny receive buffer, reads the status line and nothing more, as a peer
// that never reads the body. It returns the status code. The connection
// is from address from, or from where the system picks if it is "".
func stalledPeer(t *testing.T, from, addr, name string, num, size int) (int, net.Conn) {
	t.Helper()
	d := net.Dialer{LocalAddr: localTCP(from), Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /peer/file/"+name+" HTTP/1.1\r\nHost: x\r\nRange: bytes="+piece.Range(num, int32(size), -1)+
		"\r\npieceNum: "+strconv.Itoa(num)+"\r\npieceSize: "+strconv.Itoa(size)+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReaderSize(c, 16).ReadString('\n')
	if err != nil {
		t.Fatalf("piece %d: no status line: %v", num, err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("piece %d: status line %q", num, line)
	}
	code, _ := strconv.Atoi(f[1])
	return code, c
}

// localTCP is a dialer's local address for IP from, nil for "".
func localTCP(from string) net.Addr {
	if from == "" {
		return nil
	}
	return &net.TCPAddr{IP: net.ParseIP(from)}
}

// openStreamTask registers a stream cache of window pieces of size bytes
// for task file "st" and returns it.
func openStreamTask(t *testing.T, s *Server, size, window int) *streamCache {
	t.Helper()
	if w := do(t, s.Handler(), "POST", "/stream/task", "127.0.0.1:1", map[string]string{"taskFileName": "st", "taskID": "T",
		"cid": "C", "pieceSize": strconv.Itoa(size), "windowSize": strconv.Itoa(window)}, nil); w.Code != 200 {
		t.Fatalf("stream task: %d %s", w.Code, w.Body)
	}
	return s.stream("st")
}

func pushStreamPiece(t *testing.T, s *Server, num, size int, wrapped []byte) {
	t.Helper()
	if w := do(t, s.Handler(), "POST", "/stream/piece", "127.0.0.1:1", map[string]string{"taskFileName": "st",
		"pieceNum": strconv.Itoa(num), "pieceSize": strconv.Itoa(size)}, wrapped); w.Code != 200 {
		t.Fatalf("push %d: %d %s", num, w.Code, w.Body)
	}
}

// Remote peers that ask for every stream piece while it is in the window
// and never read cannot keep more than 2 x window pieces in memory: past
// that the cache answers 503 and the fetcher goes elsewhere. Unbounded,
// each evicted piece's buffer stayed with its stalled response (for the
// server's write timeout) and every push took a fresh one: memory grew
// with the stream, not the window.
func TestStalledPeersHoldAtMostTwoWindows(t *testing.T) {
	s, _ := newTestServer(t)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close) // after the stalled peers' connections close
	const size = 4 << 20
	const window, pieces = 2, 32
	sc := openStreamTask(t, s, size, window)
	wrapped := piece.Wrap(nil, make([]byte, size-piece.WrapSize), size)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	busy := 0
	for i := 0; i < pieces; i++ {
		pushStreamPiece(t, s, i, size, wrapped)
		switch code, _ := stalledPeer(t, "", srv.Listener.Addr().String(), "st", i, size); code {
		case http.StatusPartialContent:
		case http.StatusServiceUnavailable:
			busy++
		default:
			t.Fatalf("piece %d: %d", i, code)
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	sc.mu.Lock()
	sending, held := sc.sending, sc.held
	sc.mu.Unlock()
	grown := (int64(after.HeapInuse) - int64(before.HeapInuse)) >> 20
	t.Logf("window %d x %d MiB: %d sends hold %d pieces, %d answered 503; heap in use grew %d MiB",
		window, size>>20, sending, held, busy, grown)
	if sending > 2*window || held > 2*window || grown > int64(4*window*size>>20) {
		t.Errorf("stalled peers hold %d pieces (%d sends, %d MiB heap) of a %d-piece window", held, sending, grown, window)
	}
	if busy != pieces-2*window {
		t.Errorf("%d of %d asks answered 503, want all past the first %d", busy, pieces, 2*window)
	}
}

// One peer that asks for piece after piece and never reads is sent its
// share of the stream cache's places, not all of them: a peer at another
// address is still sent a piece, at once. Unshared, the stalled peer took
// every place until its write deadlines (94 s for a 4 MiB piece) and
// every other peer was answered 503 meanwhile.
func TestStalledPeerLeavesOthersServed(t *testing.T) {
	s, _ := newTestServer(t)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	const size, window, pieces = 4 << 20, 4, 10
	sc := openStreamTask(t, s, size, window)
	wrapped := piece.Wrap(nil, make([]byte, size-piece.WrapSize), size)
	addr := srv.Listener.Addr().String()
	sent := 0
	for i := 0; i < pieces; i++ {
		pushStreamPiece(t, s, i, size, wrapped)
		switch code, _ := stalledPeer(t, "127.0.0.1", addr, "st", i, size); code {
		case http.StatusPartialContent:
			sent++
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("piece %d: %d", i, code)
		}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: localTCP("127.0.0.2")}).DialContext}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", srv.URL+"/peer/file/st", nil)
	for k, v := range map[string]string{"Range": "bytes=" + piece.Range(pieces-1, size, -1),
		"pieceNum": strconv.Itoa(pieces - 1), "pieceSize": strconv.Itoa(size)} {
		req.Header.Set(k, v)
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusPartialContent || n != size || err != nil {
		t.Fatalf("the other peer, while one stalls on %d pieces: %d, %d bytes, %v", sent, resp.StatusCode, n, err)
	}
	t.Logf("the other peer was sent piece %d in %v", pieces-1, time.Since(t0))
	if share := sc.peerShare(); sent != share || share >= sc.maxHeld() {
		t.Errorf("the stalled peer was sent %d pieces, want its share %d of %d places", sent, share, sc.maxHeld())
	}
}

// One peer is sent as many pieces at once as a dfget fetches (its
// --clientqueue, 6 by default), even at the default window, where a
// quarter of the places is fewer; past its share it is answered 503
// though places are left.
func TestPeerGetsItsShare(t *testing.T) {
	s, _ := newTestServer(t)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	const size = 4 << 20
	sc := openStreamTask(t, s, size, config.DefaultWindowSize)
	wrapped := piece.Wrap(nil, make([]byte, size-piece.WrapSize), size)
	addr := srv.Listener.Addr().String()
	for i := 0; i <= config.DefaultClientQueue; i++ {
		pushStreamPiece(t, s, i, size, wrapped)
	}
	for i := 0; i < config.DefaultClientQueue; i++ {
		if code, _ := stalledPeer(t, "127.0.0.1", addr, "st", i, size); code != http.StatusPartialContent {
			t.Fatalf("piece %d of %d fetched at once by one peer: %d", i+1, config.DefaultClientQueue, code)
		}
	}
	if code, _ := stalledPeer(t, "127.0.0.1", addr, "st", config.DefaultClientQueue, size); code != http.StatusServiceUnavailable {
		t.Errorf("piece %d of one peer with a share of %d: %d, want 503", config.DefaultClientQueue+1, sc.peerShare(), code)
	}
}

// A peer that asks for a piece and never reads is cut off at the piece's
// own write deadline, a stream piece (releasing its buffer) as a file
// piece (releasing the goroutine and the open file), not after the
// server's write timeout.
func TestStalledPeerCutOffAtPieceDeadline(t *testing.T) {
	const size = 4 << 20
	for _, stream := range []bool{true, false} {
		t.Run(map[bool]string{true: "stream", false: "file"}[stream], func(t *testing.T) {
			s, dir := newTestServer(t)
			s.uploadGrace, s.uploadFloorRate = 300*time.Millisecond, 1<<40
			srv := httptest.NewServer(s.Handler())
			t.Cleanup(srv.Close)
			name := "st"
			var sc *streamCache
			if stream {
				sc = openStreamTask(t, s, size, 2)
				pushStreamPiece(t, s, 0, size, piece.Wrap(nil, make([]byte, size-piece.WrapSize), size))
			} else {
				name = "file"
				if err := os.WriteFile(filepath.Join(dir, name+ServiceSuffix), make([]byte, 2*size), 0o644); err != nil {
					t.Fatal(err)
				}
				do(t, s.Handler(), "GET", "/check/"+name, "127.0.0.1:1", map[string]string{"dataDir": dir}, nil)
			}
			t0 := time.Now()
			if code, _ := stalledPeer(t, "", srv.Listener.Addr().String(), name, 0, size); code != http.StatusPartialContent {
				t.Fatalf("status %d", code)
			}
			for s.inflight.Load() > 0 {
				if time.Since(t0) > 5*time.Second {
					t.Fatalf("the response to a peer that does not read still runs after %v", time.Since(t0))
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("cut off after %v", time.Since(t0))
			if sc != nil {
				sc.mu.Lock()
				sending, held, peers := sc.sending, sc.held, len(sc.peers)
				sc.mu.Unlock()
				if sending != 0 || held != 0 || peers != 0 {
					t.Errorf("after the cut-off: %d sends hold %d pieces for %d peers", sending, held, peers)
				}
			}
		})
	}
}

// The host upload limit (--totallimit) covers stream-cache pieces as it
// does file pieces. Waiting on the limiter does not count against a
// piece's write deadline: here the deadline is a second and each piece
// takes about four.
func TestUploadsKeepTotalLimit(t *testing.T) {
	for _, stream := range []bool{true, false} {
		t.Run(map[bool]string{true: "stream", false: "file"}[stream], func(t *testing.T) {
			t.Parallel()
			s, dir := newTestServer(t)
			s.uploadGrace, s.uploadFloorRate = time.Second, 1<<40
			h := s.Handler()
			srv := httptest.NewServer(h)
			defer srv.Close()
			const limit, pieces = 256 << 10, 4
			if w := do(t, h, "GET", "/check/file", "127.0.0.1:1", map[string]string{"dataDir": dir,
				"totalLimit": strconv.Itoa(limit)}, nil); w.Code != 200 {
				t.Fatal(w.Code)
			}
			content := make([]byte, testPieceSize-piece.WrapSize)
			name := "file"
			if stream {
				name = "st"
				openStreamTask(t, s, testPieceSize, pieces)
				for i := 0; i < pieces; i++ {
					pushStreamPiece(t, s, i, testPieceSize, piece.Wrap(nil, content, testPieceSize))
				}
			} else if err := os.WriteFile(filepath.Join(dir, name+ServiceSuffix), make([]byte, pieces*len(content)), 0o644); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			var wg sync.WaitGroup
			for i := 0; i < pieces; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					fetchWhole(t, srv.URL+"/peer/file/"+name, i)
				}()
			}
			wg.Wait()
			// 4 MiB at 256 KiB/s, less the limiter's 256 KiB burst: 15 s.
			took := time.Since(t0)
			t.Logf("%d pieces of %d bytes in %v", pieces, testPieceSize, took)
			if least := time.Duration(pieces*testPieceSize-limit) * time.Second / limit * 8 / 10; took < least {
				t.Errorf("%d pieces of %d bytes uploaded in %v under a %d B/s total limit, want at least %v",
					pieces, testPieceSize, took, limit, least)
			}
		})
	}
}

// fetchWhole gets wrapped piece num of a task file of testPieceSize pieces
// from url and checks it arrived whole.
func fetchWhole(t *testing.T, url string, num int) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range pieceHeaders(num, -1) {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusPartialContent || n != testPieceSize || err != nil {
		t.Errorf("piece %d: %d, %d bytes, %v", num, resp.StatusCode, n, err)
	}
}
