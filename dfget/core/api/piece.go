package api

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// ErrPieceNotFound is a holder answering 404 for a piece.
var ErrPieceNotFound = errors.New("piece not found at holder")

// Md5MismatchError is a piece whose bytes do not hash to the expected md5.
type Md5MismatchError struct{ Real, Expected string }

func (e *Md5MismatchError) Error() string {
	return fmt.Sprintf("piece md5 mismatch: got %s, want %s", e.Real, e.Expected)
}

// BufferPool recycles piece buffers so a download allocates about as many
// as it has pieces in flight, not one per piece. It is a bounded free list,
// not a sync.Pool: a GC empties a sync.Pool, and every fresh multi-MiB
// buffer then costs page faults on its first use.
type BufferPool struct {
	once sync.Once
	free chan *[]byte
}

// poolSize bounds the buffers kept; more than the pieces ever in flight.
const poolSize = 16

func (b *BufferPool) init() { b.once.Do(func() { b.free = make(chan *[]byte, poolSize) }) }

// Get returns an empty buffer with at least size capacity.
func (b *BufferPool) Get(size int) *[]byte {
	b.init()
	for {
		select {
		case v := <-b.free:
			if cap(*v) >= size {
				*v = (*v)[:0]
				return v
			}
			// Too small (the piece size changed): drop it.
		default:
			s := make([]byte, 0, size)
			return &s
		}
	}
}

// Put returns a buffer to the pool; beyond its bound the buffer is dropped.
func (b *BufferPool) Put(v *[]byte) {
	if v == nil {
		return
	}
	b.init()
	select {
	case b.free <- v:
	default:
	}
}

// ErrNoDigest is a piece offered by a peer without a digest: its bytes
// could not be checked, so it is not taken.
var ErrNoDigest = errors.New("piece offered by a peer without a digest")

// FetchRequest names one piece to download from one holder.
type FetchRequest struct {
	Info types.PieceInfo
	// Wrapped is false in source-CDN mode, where pieces carry no wrapper.
	Wrapped bool
	// Headers are sent to the holder (source-CDN mode only).
	Headers map[string]string
	// SourceURL is the URL this download is of. In source-CDN mode a piece
	// without a digest (a Dragonfly 1.x supernode gives none) is fetched
	// from it, whoever the supernode named as the holder.
	SourceURL string
	Limiter   *xrate.Limiter
}

// URL is where the piece is fetched: the path is a full URL in source-CDN
// mode, otherwise a path on the holder.
func (r *FetchRequest) URL() string {
	if strings.Contains(r.Info.Path, "://") {
		return r.Info.Path
	}
	return "http://" + net.JoinHostPort(r.Info.PeerIP, strconv.Itoa(r.Info.PeerPort)) + r.Info.Path
}

// target is where the piece is really fetched. A piece with a digest may
// come from anyone: the digest checks it. One without is taken only from
// a party trusted as much as a digest would be: in source-CDN mode the
// download's own source URL (a peer, or a path a peer registered, could
// send anything), in CDN mode the supernode's cache, whose pieces the
// whole-file md5 covers. Never from a peer.
func (r *FetchRequest) target() (string, error) {
	switch {
	case r.Info.PieceMd5 != "":
		return r.URL(), nil
	case !r.Wrapped && r.SourceURL != "":
		return r.SourceURL, nil
	case r.Wrapped && strings.HasPrefix(r.Info.CID, types.SuperNodeCIDPrefix):
		return r.URL(), nil
	}
	return "", fmt.Errorf("piece %d from %s (%s): %w", r.Info.PieceNum, r.Info.CID, r.Info.PeerIP, ErrNoDigest)
}

// FetchPiece downloads a piece into buf (which it may grow) and checks it:
// the whole requested range must arrive, its md5 must match pieceMd5 when
// the supernode gave one, and a wrapped piece's header and tail must be
// right. It returns the piece bytes as received (wrapped unless source-CDN
// mode).
func (c *Client) FetchPiece(ctx context.Context, r *FetchRequest, buf *[]byte) ([]byte, error) {
	start, end, err := piece.ParseRange(r.Info.Range)
	if err != nil {
		return nil, err
	}
	want := end - start + 1
	resp, err := c.requestPiece(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > want {
		return nil, fmt.Errorf("fetch piece %d: holder sends %d bytes for a %d-byte range", r.Info.PieceNum, resp.ContentLength, want)
	}
	b := (*buf)[:0]
	if int64(cap(b)) < want {
		b = make([]byte, 0, want)
	}
	// The md5 is computed as the bytes arrive, so hashing overlaps the
	// network instead of following it.
	hashing := r.Info.PieceMd5 != ""
	h := md5.New()
	var src io.Reader = resp.Body
	if r.Limiter != nil {
		src = &limitedReader{ctx: ctx, r: resp.Body, l: r.Limiter}
	}
	for int64(len(b)) < want {
		n, err := src.Read(b[len(b):want])
		if hashing && n > 0 {
			h.Write(b[len(b) : len(b)+n])
		}
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*buf = b
			return nil, fmt.Errorf("read piece %d from %s: %w", r.Info.PieceNum, r.Info.PeerIP, err)
		}
	}
	*buf = b
	if resp.ContentLength >= 0 && int64(len(b)) != resp.ContentLength {
		return nil, fmt.Errorf("read piece %d from %s: short body %d of %d", r.Info.PieceNum, r.Info.PeerIP, len(b), resp.ContentLength)
	}
	if err := r.check(b, hex.EncodeToString(h.Sum(nil)), want); err != nil {
		return nil, err
	}
	return b, nil
}

// requestPiece sends the piece request and fails on a non-2xx answer.
func (c *Client) requestPiece(ctx context.Context, r *FetchRequest) (*http.Response, error) {
	u, err := r.target()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build piece request: %w", err)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Range", "bytes="+r.Info.Range)
	req.Header.Set("pieceNum", strconv.Itoa(r.Info.PieceNum))
	req.Header.Set("pieceSize", strconv.Itoa(int(r.Info.PieceSize)))
	req.Header.Set("User-Agent", UserAgent())
	if !r.Wrapped {
		req.Header.Set("cdnSource", types.CDNSourceSource)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch piece %d: %w", r.Info.PieceNum, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("fetch piece %d from %s: %w", r.Info.PieceNum, r.Info.PeerIP, ErrPieceNotFound)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		resp.Body.Close()
		return nil, fmt.Errorf("fetch piece %d from %s: HTTP %d", r.Info.PieceNum, r.Info.PeerIP, resp.StatusCode)
	}
	return resp, nil
}

// check judges a received piece: b, its md5 sum, for a range of want
// bytes. A piece is the whole range or a failure, whatever the digest
// says; the one exception is a full-piece range of a file whose length was
// unknown when it was scheduled, which the holder clips at the end of the
// file and whose wrapper then states the shorter length. Failures are
// Md5MismatchErrors, so the holder is reported.
func (r *FetchRequest) check(b []byte, sum string, want int64) error {
	exp := piece.Md5OfValue(r.Info.PieceMd5)
	bad := func(real string) error { return &Md5MismatchError{Real: real, Expected: exp} }
	clipped := r.Wrapped && want == int64(r.Info.PieceSize)
	if int64(len(b)) != want && !clipped {
		return bad(fmt.Sprintf("short: %d of %d bytes", len(b), want))
	}
	if exp != "" && !strings.EqualFold(sum, exp) {
		return bad(sum)
	}
	if n, ok := digestLength(r.Info.PieceMd5); ok && n != len(b) {
		return bad(fmt.Sprintf("%s: %d bytes, the digest says %d", sum, len(b), n))
	}
	if r.Wrapped {
		if _, err := piece.Unwrap(b); err != nil {
			return bad("malformed: " + err.Error())
		}
	}
	return nil
}

// digestLength is the length part of an "md5:len" piece digest.
func digestLength(v string) (int, bool) {
	_, l, ok := strings.Cut(v, ":")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(l)
	return n, err == nil
}

// LimitReader wraps r so reads wait on l (nil = unlimited).
func LimitReader(ctx context.Context, r io.Reader, l *xrate.Limiter) io.Reader {
	if l == nil {
		return r
	}
	return &limitedReader{ctx: ctx, r: r, l: l}
}

type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *xrate.Limiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if b := lr.l.Burst(); len(p) > b {
		p = p[:b]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.WaitN(lr.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
