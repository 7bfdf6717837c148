package cdn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/netguard"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
)

// SourceError is a source answer that fails the task: a bad status, a
// timeout or a transport error. Auth is set for 401/407.
type SourceError struct {
	URL    string
	Status int
	Auth   bool
	Err    error
}

// Error masks the URL's credentials: the message is logged and sent back.
func (e *SourceError) Error() string {
	if e.Status != 0 && e.Err != nil {
		return fmt.Sprintf("source %s answered %d %s: %v", urlutil.Redact(e.URL), e.Status, http.StatusText(e.Status), e.Err)
	}
	if e.Status != 0 {
		return fmt.Sprintf("source %s answered %d %s", urlutil.Redact(e.URL), e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("source %s: %v", urlutil.Redact(e.URL), e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }

// IsSourceError reports whether err is (or wraps) a *SourceError.
func IsSourceError(err error) bool {
	var se *SourceError
	return errors.As(err, &se)
}

// newClient returns the client of source fetches: every connection it makes,
// redirects included, is checked by the source guard (no loopback,
// link-local or unspecified address unless --source-allow names it), and
// every redirect by the host allow-list.
func newClient(cfg Config, tlsCfg *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: cfg.SourceTimeout, KeepAlive: 30 * time.Second}
	g := netguard.New(cfg.SourceAllow)
	return &http.Client{Transport: g.Transport(newTransport(cfg.SourceTimeout, tlsCfg), d), CheckRedirect: checkRedirect(cfg.SourceAllow)}
}

// newTransport has no dialer: newClient gives it the guarded one.
func newTransport(headerTimeout time.Duration, tlsCfg *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSHandshakeTimeout:   headerTimeout,
		ResponseHeaderTimeout: headerTimeout,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSClientConfig:       tlsCfg,
		// Content is stored as the source sends it; transparent gzip would
		// change lengths and md5s.
		DisableCompression: true,
	}
}

// client returns the HTTP client for a source: the shared one, or a
// dedicated one when the registration asked for insecure TLS or extra root
// CAs (kept per task, unlike v1's global per-host client).
func (m *Manager) client(src Source) (*http.Client, error) {
	if !src.Insecure && len(src.RootCAs) == 0 {
		return m.http, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: src.Insecure} //nolint:gosec // the client asked for it
	if len(src.RootCAs) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, pem := range src.RootCAs {
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("invalid root CA: no PEM certificate")
			}
		}
		cfg.RootCAs = pool
	}
	return newClient(m.cfg, cfg), nil
}

// checkRedirect follows at most 10 redirects, only to allowed hosts.
func checkRedirect(allow []string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if !urlutil.HostAllowed(allow, req.URL) {
			return fmt.Errorf("redirect to host %q outside the source allow-list", req.URL.Hostname())
		}
		return nil
	}
}

// get sends GET with the task headers plus extra, and fails on statuses
// other than 200, 206 and 304, and on a 206 to a request without Range: a
// part of the file, from a source or proxy that answers so, would be
// stored as the whole file.
func (m *Manager) get(ctx context.Context, src Source, extra map[string]string) (*http.Response, error) {
	c, err := m.client(src)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.RawURL, nil)
	if err != nil {
		return nil, &SourceError{URL: src.RawURL, Err: err}
	}
	for k, v := range src.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		m.countSourceFailure()
		return nil, &SourceError{URL: src.RawURL, Err: err}
	}
	st := resp.StatusCode
	var serr error
	switch {
	case st == http.StatusPartialContent && req.Header.Get("Range") == "":
		serr = errors.New("the request had no Range: a part of the file would be stored as the whole file")
	case st == http.StatusOK, st == http.StatusPartialContent, st == http.StatusNotModified:
		return resp, nil
	}
	resp.Body.Close()
	m.countSourceFailure()
	return nil, &SourceError{URL: src.RawURL, Status: st, Auth: st == http.StatusUnauthorized || st == http.StatusProxyAuthRequired, Err: serr}
}

// askByte asks the source for the byte at off alone, with the task's
// headers (its own Range replaced) through the guarded client, and closes
// the answer's body after at most 1 KiB: its headers tell the length
// without the file being sent (a source that ignores Range answers 200
// with the whole file, of which little is read).
func (m *Manager) askByte(ctx context.Context, src Source, off int64) (*http.Response, error) {
	o := strconv.FormatInt(off, 10)
	resp, err := m.get(ctx, src, map[string]string{"Range": "bytes=" + o + "-" + o})
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	return resp, nil
}

func (m *Manager) countSourceFailure() {
	m.metrics.SourceFailures.Inc()
}

// partOf checks that a 206 answer is the range the request's Range header
// spec asked for: its Content-Range starts at the range's first byte and
// ends at its last or, for a range open to the end or reaching past it, at
// the file's last (so the total must be known); a suffix range is placed by
// the total. Its Content-Length, if any, is the length of that range.
// Another answer would have its bytes taken, and digested, as those of the
// range asked for.
func partOf(resp *http.Response, spec string) (urlutil.ContentRange, error) {
	br, err := urlutil.ParseByteRange(spec)
	if err != nil {
		return urlutil.ContentRange{}, fmt.Errorf("the request's %w", err)
	}
	got := resp.Header.Get("Content-Range")
	cr, err := urlutil.ParseContentRange(got)
	if err != nil {
		return cr, fmt.Errorf("to Range %q: %w", spec, err)
	}
	first, atEnd := br.First, cr.Total >= 0 && cr.Last == cr.Total-1
	if br.Suffix > 0 {
		first, br.Last = max(cr.Total-br.Suffix, 0), -1
	}
	ends := cr.Last == br.Last || (atEnd && (br.Last < 0 || cr.Last < br.Last))
	switch {
	case br.Suffix > 0 && cr.Total < 0:
		return cr, fmt.Errorf("Content-Range %q to Range %q: no total to place the suffix by", got, spec)
	case cr.First != first || !ends:
		return cr, fmt.Errorf("Content-Range %q is not the Range %q asked for", got, spec)
	case resp.ContentLength >= 0 && resp.ContentLength != cr.Last-cr.First+1:
		return cr, fmt.Errorf("Content-Range %q with a Content-Length of %d", got, resp.ContentLength)
	}
	return cr, nil
}

func lastModifiedMillis(h http.Header) int64 {
	t, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		return 0
	}
	return t.UnixMilli()
}
