package api

import (
	"context"
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

// FetchRequest names one piece to download from one holder.
type FetchRequest struct {
	Info types.PieceInfo
	// Wrapped is false in source-CDN mode, where pieces carry no wrapper.
	Wrapped bool
	// Headers are the user's --header values, sent only when the piece
	// is fetched from the source (source-CDN mode only: fromSource).
	Headers map[string]string
	// SourceURL is the URL this download is of. In source-CDN mode a piece
	// the supernode names the source for (a full URL as its path), and one
	// without a digest (a Dragonfly 1.x supernode gives none) whoever it
	// named as the holder, is fetched from it (fromSource).
	SourceURL string
	// Uncovered is set when no whole-file md5 will check the piece after
	// it is written (a stream: its bytes are out at once). A wrapped piece
	// without a digest is then refused even from the supernode (target).
	Uncovered bool
	// Pace, when set, wraps the piece body as it is read: the
	// downloader's --locallimit pacing, which times its own waits so they
	// are not counted as the holder's.
	Pace func(io.Reader) io.Reader
}

// URL is where the piece is fetched: the path is a full URL in source-CDN
// mode, otherwise a path on the holder.
func (r *FetchRequest) URL() string {
	if strings.Contains(r.Info.Path, "://") {
		return r.Info.Path
	}
	return "http://" + net.JoinHostPort(r.Info.PeerIP, strconv.Itoa(r.Info.PeerPort)) + r.Info.Path
}

// FetchPiece downloads a piece into buf (which it may grow) and checks it
// (verify.go): the whole requested range must arrive, it must match the
// digest the supernode gave (BLAKE3 when it gave one, else pieceMd5), and
// a wrapped piece's header and tail must be right. It returns the piece
// bytes as received (wrapped unless source-CDN mode).
func (c *Client) FetchPiece(ctx context.Context, r *FetchRequest, buf *[]byte) ([]byte, error) {
	start, end, err := piece.ParseRange(r.Info.Range)
	if err != nil {
		return nil, err
	}
	want := end - start + 1
	// The buffer is allocated at want bytes: a range the supernode made
	// longer than a piece must not size it.
	if size := int64(r.Info.PieceSize); size <= 0 || size > piece.MaxSize || want > size {
		return nil, fmt.Errorf("fetch piece %d: range %s does not fit the piece size %d", r.Info.PieceNum, r.Info.Range, size)
	}
	v, err := newVerifier(r.Info)
	if err != nil {
		return nil, r.badDigest(err)
	}
	u, err := r.target()
	if err != nil {
		return nil, err
	}
	// The answer is judged against the range asked for, which differs
	// from the piece's own only when re-based onto a user Range.
	first, last, err := r.wireRange(start, end)
	if err != nil {
		return nil, err
	}
	resp, err := c.requestPiece(ctx, r, u, first, last)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := r.checkReply(resp, first, last, v); err != nil {
		return nil, err
	}
	if resp.ContentLength > want {
		return nil, r.badReply(v, "%d bytes for a %d-byte range", resp.ContentLength, want)
	}
	b := (*buf)[:0]
	if int64(cap(b)) < want {
		b = make([]byte, 0, want)
	}
	// The digest is computed as the bytes arrive, so hashing overlaps the
	// network instead of following it.
	var src io.Reader = resp.Body
	if r.Pace != nil {
		src = r.Pace(src)
	}
	for int64(len(b)) < want {
		n, err := src.Read(b[len(b):want])
		_, _ = v.Write(b[len(b) : len(b)+n])
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
	if resp.ContentLength < 0 && int64(len(b)) == want {
		// A body of unstated length that goes on past the range is not
		// the range (a 200 from a source that ignored it sends the file).
		var one [1]byte
		if n, _ := io.ReadFull(resp.Body, one[:]); n > 0 {
			return nil, r.badReply(v, "body longer than the %d-byte range", want)
		}
	}
	if err := r.check(b, v, want); err != nil {
		return nil, err
	}
	return b, nil
}

// requestPiece sends the request for bytes first-last of u (target and
// wireRange) and fails on a non-2xx answer.
func (c *Client) requestPiece(ctx context.Context, r *FetchRequest, u string, first, last int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build piece request: %w", err)
	}
	// The user's --header values are for the origin (an Authorization or
	// a Cookie): a peer holder never sees them. Dragonfly 1.x sends them
	// to every holder in the source pattern.
	if r.fromSource() {
		for k, v := range r.Headers {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(last, 10))
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
