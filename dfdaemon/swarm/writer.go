package swarm

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
)

// ErrDigestMismatch is content whose sha256 is not the digest it was
// asked for by.
var ErrDigestMismatch = errors.New("content does not match its digest")

// blobWriter is the stream's writer: it sends the response header before
// the first byte and every byte as it comes, except, for a digest-checked
// download, the last byte, held back until the sha256 of all of them is
// the digest. A client therefore never receives a complete wrong body: on
// a mismatch the writer fails the download and the handler aborts the
// connection one byte short.
type blobWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	hdr    http.Header
	length int64  // -1: unknown
	want   string // the blob's digest, "" when unchecked
	h      hash.Hash

	mu       sync.Mutex
	n        int64 // bytes accepted
	out      int64 // bytes sent
	held     []byte
	err      error
	verified bool
	header   bool
}

func newBlobWriter(w http.ResponseWriter, hdr http.Header, length int64, want string) *blobWriter {
	b := &blobWriter{w: w, rc: http.NewResponseController(w), hdr: hdr, length: length, want: want}
	if want != "" {
		b.h = digest.SHA256.New()
	}
	return b
}

// Write implements io.Writer for the download.
func (b *blobWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.length >= 0 && b.n+int64(len(p)) > b.length {
		b.err = fmt.Errorf("got more than the %d bytes announced", b.length)
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	b.n += int64(len(p))
	if b.h == nil {
		return len(p), b.send(p)
	}
	if err := b.send(b.held); err != nil {
		return len(p), err
	}
	if err := b.send(p[:len(p)-1]); err != nil {
		return len(p), err
	}
	// Hashed once the bytes are on their way: the held last byte is what
	// keeps a client from accepting a wrong blob, and the first bytes of a
	// layer leave a hash of a piece sooner.
	b.h.Write(p)
	b.held = append(b.held[:0], p[len(p)-1])
	if b.n == b.length {
		if err := b.verify(); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// verify checks the digest of every byte accepted and, when it matches,
// sends the held byte; b.mu is held.
func (b *blobWriter) verify() error {
	if got := digest.FromHash(digest.SHA256, b.h).String(); got != b.want {
		b.err = fmt.Errorf("%w: %d bytes have %s, want %s", ErrDigestMismatch, b.n, got, b.want)
		return b.err
	}
	b.verified = true
	err := b.send(b.held)
	b.held = nil
	return err
}

// send writes p to the client (the header first), flushing so the bytes
// leave now; b.mu is held. A failed write means the client is gone: it
// is reported as a closed pipe, which the download takes for a reader
// that left.
func (b *blobWriter) send(p []byte) error {
	if !b.header {
		b.header = true
		for k, v := range b.hdr {
			b.w.Header()[k] = v
		}
		if b.length >= 0 {
			b.w.Header().Set("Content-Length", strconv.FormatInt(b.length, 10))
		}
		b.w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return nil
	}
	n, err := b.w.Write(p)
	b.out += int64(n)
	if err == nil {
		err = b.rc.Flush()
	}
	if err != nil {
		b.err = fmt.Errorf("client: %w (%v)", io.ErrClosedPipe, err)
		return b.err
	}
	return nil
}

// finish ends the response after the download returned (ok: it reported
// success) and reports whether the client got the whole, checked body;
// else the error why not. A body delivered whole (and, with a digest,
// verified) is a success whatever the download did after its last byte:
// a client that has it all may leave before the supernode's finish.
func (b *blobWriter) finish(ok bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.wholeLocked():
		return nil
	case b.err != nil:
		return b.err
	case !ok:
		return errors.New("download failed")
	case b.n == 0:
		return errNoBytes
	case b.length >= 0 && b.n != b.length:
		return fmt.Errorf("got %d of %d bytes", b.n, b.length)
	case b.h != nil:
		// The length was unknown: the digest is checked at the end.
		return b.verify()
	}
	return nil
}

// whole reports whether the client has the whole body, verified when
// there is a digest.
func (b *blobWriter) whole() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wholeLocked()
}

func (b *blobWriter) wholeLocked() bool {
	return b.length >= 0 && b.out == b.length && (b.h == nil || b.verified)
}

func (b *blobWriter) sent() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out
}

func (b *blobWriter) started() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.header
}

func (b *blobWriter) mismatch() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return errors.Is(b.err, ErrDigestMismatch)
}
