package uploader

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// stalledPeer asks the server at addr for a piece on a connection with a
// tiny receive buffer, reads the status line and nothing more, as a peer
// that never reads the body. It returns the status code.
func stalledPeer(t *testing.T, addr, name string, num, size int) (int, net.Conn) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
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
		switch code, _ := stalledPeer(t, srv.Listener.Addr().String(), "st", i, size); code {
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
