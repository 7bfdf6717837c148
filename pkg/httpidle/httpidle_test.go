package httpidle

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A handler writing to a client that reads nothing gets an error once
// a write made no progress for the idle time, instead of blocking.
func TestWriteToStalledClientFails(t *testing.T) {
	const idle = 200 * time.Millisecond
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iw := New(w, idle)
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for i := 0; i < 256; i++ { // 256 MiB: far more than the socket buffers
			if _, err := iw.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("256 MiB written to a client that read nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("10 s after the client stopped reading (idle 200 ms), the handler is still blocked in a write")
	}
}
