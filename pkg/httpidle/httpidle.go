// Package httpidle bounds how long a handler may stay blocked writing to a
// client that stopped reading (Writer), or reading a forwarded answer from
// a source that stopped sending (Transport). dfdaemon's server has no
// WriteTimeout (a layer streams as long as it takes), so without these a
// client that keeps its connection open but reads nothing, or a source
// that sends a head and then nothing, holds the handler, and all the
// download or source connection behind it, forever.
package httpidle

import (
	"net/http"
	"time"
)

// Writer is an http.ResponseWriter whose every Write and Flush must make
// progress within Idle: each one moves the connection's write deadline to
// now + Idle, so a response of any length streams as long as the client
// keeps reading, and a write to a client that stopped fails with a
// timeout, as a write to a client that left does. No deadline is cleared
// when the handler returns: net/http clears it itself once the response,
// its buffered tail included, is out, and clearing it earlier would let
// that tail block on a stalled client.
type Writer struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

// New wraps w; idle <= 0 leaves writes unbounded.
func New(w http.ResponseWriter, idle time.Duration) *Writer {
	return &Writer{ResponseWriter: w, rc: http.NewResponseController(w), idle: idle}
}

// arm moves the write deadline. A ResponseWriter that cannot set one (a
// test recorder, a wrapper without Unwrap) is written without.
func (w *Writer) arm() {
	if w.idle > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	}
}

// Write implements http.ResponseWriter.
func (w *Writer) Write(p []byte) (int, error) {
	w.arm()
	return w.ResponseWriter.Write(p)
}

// FlushError sends what is buffered; http.ResponseController uses it.
func (w *Writer) FlushError() error {
	w.arm()
	return w.rc.Flush()
}

// Flush implements http.Flusher for callers that use it directly.
func (w *Writer) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the connection (hijack, read
// deadlines) through the wrapper.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
