// Package httpidletest holds the test servers of the idle bounds' tests:
// an origin that stops sending in the middle of an answer.
package httpidletest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// StalledOrigin is a server that answers every request with a
// Content-Length of length, sends head (flushed) and then nothing more
// until the test ends. It closes with the test.
func StalledOrigin(t *testing.T, head string, length int) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(length))
		_, _ = w.Write([]byte(head))
		_ = http.NewResponseController(w).Flush()
		<-release
	}))
	// Cleanups run last first: the handlers return before Close waits
	// for them.
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv
}
