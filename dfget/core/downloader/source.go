package downloader

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"time"

	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/fileio"
	"github.com/damselfly-p2p/damselfly/pkg/fsname"
	"github.com/damselfly-p2p/damselfly/pkg/httpidle"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// BackSource downloads straight from the origin: the fallback when P2P is not
// possible and the whole of --pattern source.
type BackSource struct {
	HTTP    *http.Client
	URL     string
	Headers map[string]string
	Limiter *xrate.Limiter
	// Digest is the whole file's expected sha256 (zero: none), which
	// DownloadFile checks.
	Digest digest.Digest
}

// SourceIdle is how long a read of the source's body may wait for a byte
// (SourceClient's idle). The download's own timeout grows with the file
// (--minrate: 4.5 hours for a GiB at the default), so without it an origin
// that stops sending mid-file would hold dfget, and the container engine
// behind a dfdaemon, for that long. The supernode's CDN gives up on a
// silent origin after 30 s; a fallback, often the last resort, gets twice
// that.
const SourceIdle = time.Minute

// SourceClient returns an HTTP client for the origin honouring --cacerts
// and --insecure, and the environment's HTTP(S)_PROXY when envProxy.
// Inside dfdaemon (--dfdaemon) envProxy is false: dfdaemon's environment
// proxy usually is dfdaemon itself, and the download it serves would come
// back to it. A read of a body that waits longer than idle for the source
// fails (idle <= 0: unbounded).
func SourceClient(caFiles []string, insecure, envProxy bool, idle time.Duration) (*http.Client, error) {
	tr := api.NewTransport()
	tr.ResponseHeaderTimeout = 0
	if envProxy {
		tr.Proxy = http.ProxyFromEnvironment
	}
	if len(caFiles) > 0 || insecure {
		cfg := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // the user asked for --insecure
		if len(caFiles) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			for _, f := range caFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, fmt.Errorf("read --cacerts %s: %w", f, err)
				}
				if !pool.AppendCertsFromPEM(b) {
					return nil, fmt.Errorf("--cacerts %s: no PEM certificate", f)
				}
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: httpidle.Transport{Base: tr, Idle: idle}}, nil
}

// rangeAsk is the user's --header Range a source request sent (none
// without one), so that the answer can be checked to be those bytes.
type rangeAsk struct {
	user bool
	odd  bool // not one range dfget can check an answer to
	br   urlutil.ByteRange
}

// askOf is what req, with the user's headers on, asks of the source.
func askOf(req *http.Request) rangeAsk {
	rg := req.Header.Get("Range")
	if rg == "" {
		return rangeAsk{}
	}
	// Config refuses a Range it cannot parse; sent anyway, its answer is
	// refused (by bodySkip, a multipart body by Open).
	br, err := urlutil.ParseByteRange(rg)
	return rangeAsk{user: true, br: br, odd: err != nil}
}

// bodySkip checks that the answer is the bytes asked for and returns how
// many to skip to reach them, and the size of the answer (sourceSize
// with Rest still counting the skipped bytes). A 200 is the whole file:
// when the user asked for a range, the range is cut out of it
// (rangeOfWhole). A 206 must state where it starts, and start where the
// range does.
func (a rangeAsk) bodySkip(resp *http.Response) (int64, SourceSize, error) {
	rg := resp.Request.Header.Get("Range")
	size := SourceSize{Rest: resp.ContentLength, Total: -1}
	if resp.StatusCode == http.StatusOK {
		if a.user {
			return a.rangeOfWhole(rg, resp.ContentLength)
		}
		size.Total = resp.ContentLength
		return 0, size, nil
	}
	switch {
	case !a.user:
		return 0, size, errors.New("answered 206 to a request without Range")
	case a.odd:
		return 0, size, fmt.Errorf("answered 206 to Range %q, which is not one range dfget can check", rg)
	}
	cr, err := urlutil.ParseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return 0, size, fmt.Errorf("answered 206 to Range %q: %w", rg, err)
	}
	want := a.br.First
	if a.br.Suffix > 0 {
		if cr.Total < 0 {
			return 0, size, fmt.Errorf("answered 206 to Range %q without the file length", rg)
		}
		want = max(cr.Total-a.br.Suffix, 0)
	}
	if cr.First != want {
		return 0, size, fmt.Errorf("answered Content-Range %q to Range %q: the body starts at byte %d, not %d", resp.Header.Get("Content-Range"), rg, cr.First, want)
	}
	// The span says how much comes even when Content-Length does not
	// (a chunked 206).
	size.Rest = cr.Last - cr.First + 1
	return 0, size, nil
}

// rangeOfWhole places the user's range in a 200 of size bytes (-1:
// unknown), the whole file of an origin that ignores Range, as the
// supernode's CDN cuts a task's range out of one: the bytes to skip and
// bodySkip's size, whose Rest ends at the range's end (Open cuts the body
// there). Without it the range could not be downloaded from such an
// origin at all, though its file holds the bytes.
func (a rangeAsk) rangeOfWhole(rg string, size int64) (int64, SourceSize, error) {
	none := SourceSize{Rest: -1, Total: -1}
	if a.odd {
		return 0, none, fmt.Errorf("answered 200 (the whole file) to Range %q, which is not one range dfget can cut out of it", rg)
	}
	first, length, err := a.br.InWhole(size)
	if err != nil {
		return 0, none, fmt.Errorf("%w (Range %q)", err, rg)
	}
	if length >= 0 {
		none.Rest = first + length
	}
	return first, none, nil
}

// rangeBody is the part of a whole-file body that is the range, once the
// bytes before it are skipped: rest bytes, or up to the body's end when
// rest is -1. The range must then get a byte: one starting at the file's
// end is no content, which an origin honouring Range answers 416, not an
// empty output.
func rangeBody(body io.ReadCloser, rest int64) (io.ReadCloser, error) {
	if rest >= 0 {
		return readCloser{io.LimitReader(body, rest), body}, nil
	}
	var one [1]byte
	if k, err := io.ReadFull(body, one[:]); k == 0 {
		return nil, fmt.Errorf("answered 200 whose body ends where the range starts: %w", err)
	}
	return readCloser{io.MultiReader(bytes.NewReader(one[:]), body), body}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// SourceSize is what a source answer says of its size: Rest, the bytes
// its body holds (with a user Range, of the range), and Total, the whole
// file's length (with a user Range, unknown: the stream is the range, not
// the file); -1 when the answer does not say.
type SourceSize struct {
	Rest, Total int64
}

// ErrSourceChanged is a source whose file is not the one a stream began
// with (another length, or other bytes where the stream's are already
// out): another version of it, whose bytes cannot follow the ones already
// written.
var ErrSourceChanged = errors.New("the source holds another version of the file")

// check is nil when an answer of this size can be a stream of want bytes
// (-1: unknown, anything can).
func (z SourceSize) check(want int64) error {
	switch {
	case want < 0:
		return nil
	case z.Total >= 0 && z.Total != want:
		return fmt.Errorf("the file is %d bytes, the stream so far is of one of %d: %w", z.Total, want, ErrSourceChanged)
	case z.Rest >= 0 && z.Rest != want:
		return fmt.Errorf("the answer ends at byte %d, the stream so far is of a file of %d: %w", z.Rest, want, ErrSourceChanged)
	}
	return nil
}

// Open requests the source (the user's range of it, if a Range header
// was given) and returns the body positioned at its first byte, with the
// answer's size.
func (s *BackSource) Open(ctx context.Context) (io.ReadCloser, SourceSize, error) {
	none := SourceSize{Rest: -1, Total: -1}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, none, fmt.Errorf("source request: %w", err)
	}
	for k, v := range s.Headers {
		req.Header.Set(k, v)
	}
	ask := askOf(req)
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return nil, none, fmt.Errorf("source %s: %w", s.URL, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, none, fmt.Errorf("source %s: HTTP %d", s.URL, resp.StatusCode)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "multipart/byteranges" {
		// The parts' MIME framing is not the file; config refuses the
		// several-range header that asks for this, but an origin may send
		// it anyway.
		resp.Body.Close()
		return nil, none, fmt.Errorf("source %s: answered multipart/byteranges (several ranges), not one body", s.URL)
	}
	skip, size, err := ask.bodySkip(resp)
	if err != nil {
		resp.Body.Close()
		return nil, none, fmt.Errorf("source %s: %w", s.URL, err)
	}
	if skip > 0 {
		// The skipped bytes cross the network as the kept ones do:
		// --locallimit holds for them too.
		if _, err := io.CopyN(io.Discard, api.LimitReader(ctx, resp.Body, s.Limiter), skip); err != nil {
			resp.Body.Close()
			return nil, none, fmt.Errorf("source %s: skip %d bytes: %w", s.URL, skip, err)
		}
	}
	if size.Rest >= 0 {
		size.Rest -= skip
	}
	if ask.user && resp.StatusCode == http.StatusOK {
		body, err := rangeBody(resp.Body, size.Rest)
		if err != nil {
			resp.Body.Close()
			return nil, none, fmt.Errorf("source %s: %w", s.URL, err)
		}
		return body, size, nil
	}
	return resp.Body, size, nil
}

// Copy streams the source into w, counting bytes with onBytes. want is
// the length of the whole stream (-1: unknown) when bytes of it are
// already out (the head a stream's tail checks rather than writes,
// StreamWriter.Continue): a source of another length is another version
// of the file, whose bytes must not follow them. Its answer is checked
// before any byte is written; one that does not state its size is cut at
// want and must end there.
func (s *BackSource) Copy(ctx context.Context, w io.Writer, want int64, onBytes func(int64)) (int64, error) {
	body, size, err := s.Open(ctx)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	if err := size.check(want); err != nil {
		return 0, fmt.Errorf("source %s: %w", s.URL, err)
	}
	var r io.Reader = api.LimitReader(ctx, body, s.Limiter)
	if want >= 0 {
		r = io.LimitReader(r, want)
	}
	if onBytes != nil {
		r = &countReader{r: r, f: onBytes}
	}
	// fileio.Chunk-sized writes keep page-cache folios small (package fileio).
	n, err := io.CopyBuffer(w, r, make([]byte, fileio.Chunk))
	if err != nil {
		return n, fmt.Errorf("copy from source: %w", err)
	}
	if size.Rest >= 0 && n != size.Rest {
		return n, fmt.Errorf("source %s: got %d of %d bytes", s.URL, n, size.Rest)
	}
	if want >= 0 {
		return n, s.checkEnd(body, n, want)
	}
	return n, nil
}

// checkEnd checks that a source answer cut at want bytes (n, the bytes
// read) ended there: neither short nor with more to come.
func (s *BackSource) checkEnd(body io.Reader, n, want int64) error {
	if n != want {
		return fmt.Errorf("source %s: the file ends at byte %d, the stream so far is of one of %d: %w", s.URL, n, want, ErrSourceChanged)
	}
	var one [1]byte
	if k, _ := io.ReadFull(body, one[:]); k > 0 {
		return fmt.Errorf("source %s: the file goes on after byte %d, the length of the stream so far: %w", s.URL, want, ErrSourceChanged)
	}
	return nil
}

// DownloadFile fetches the whole source into a temp file beside output,
// checks wantMd5 and s.Digest if given, and renames it over output. output is untouched
// on failure. It returns the length.
func (s *BackSource) DownloadFile(ctx context.Context, output, wantMd5 string, onBytes func(int64)) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(output), fsname.TempPattern(output, "backsource"))
	if err != nil {
		return 0, fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The file is hashed only to check --md5 and --digest: nothing else
	// reads the sums. Without them the file is still wrapped, so that
	// Copy's buffer sets the write size (*os.File's ReadFrom would use its
	// own).
	var out io.Writer = struct{ io.Writer }{f}
	h := digest.NewWhole(wantMd5 != "", !s.Digest.IsZero())
	if h.Active() {
		out = io.MultiWriter(f, &h)
	}
	n, err := s.Copy(ctx, out, -1, onBytes)
	if err != nil {
		return n, err
	}
	if got := h.Md5Hex(); wantMd5 != "" && !EqualMd5(got, wantMd5) {
		return n, fmt.Errorf("md5 of source file is %s, want %s", got, wantMd5)
	}
	if !s.Digest.IsZero() {
		if err := s.Digest.Check(h.Sha256()); err != nil {
			return n, fmt.Errorf("source file: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("close temp file: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return n, fmt.Errorf("chmod temp file: %w", err)
	}
	if err := os.Rename(tmp, output); err != nil {
		return n, fmt.Errorf("move to %s: %w", output, err)
	}
	ok = true
	return n, nil
}

type countReader struct {
	r io.Reader
	f func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.f(int64(n))
	}
	return n, err
}
