// Package fwdbody keeps a forwarding proxy's request body from failing the
// forward after the response has started.
//
// An http.Transport that has sent a body's declared length reads it once
// more, to check for excess. An origin that answers as soon as it has the
// body may by then have started its response, and net/http's server
// drains and closes the client's request body when a handler's response
// starts (HTTP/1). That late read then fails ("invalid Read on closed
// Body"), the transport drops the origin connection, and the client gets
// a cut response. The server's body never yields more than its declared
// length, so the check has nothing to find; Bound ends the body there.
// (ResponseController.EnableFullDuplex would keep the body open, but
// net/http then panics when a handler leaves a body unread:
// golang/go#68560.)
package fwdbody

import (
	"io"
	"net/http"
)

// Bound makes r's body of known length end at that length without a
// further read of the underlying body. Call it on the outgoing request.
func Bound(r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength > 0 {
		r.Body = &sized{ReadCloser: r.Body, left: r.ContentLength}
	}
}

type sized struct {
	io.ReadCloser
	left int64
}

func (b *sized) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left <= 0 && err == nil {
		err = io.EOF
	}
	return n, err
}
