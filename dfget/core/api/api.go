// Package api is dfget's HTTP side of the protocol: calls to the supernode
// (register, pull piece tasks, piece and service reports, metrics), piece
// downloads from peers and the supernode, and calls to the local peer
// server. All calls share one tuned http.Transport so connections are
// reused, and every query string is URL-escaped.
package api

//go:generate go tool mockgen -destination=mock_roundtripper_test.go -package=api net/http RoundTripper

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// NewTransport returns the transport every dfget HTTP call goes through:
// generous per-host idle connections so piece fetches from the same holder
// reuse connections, short dial timeout, no compression (pieces are binary
// and md5-checked byte for byte).
func NewTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if t, ok := ctx.Value(dialTimeoutKey{}).(time.Duration); ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, t)
				defer cancel()
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		// No shorter than a registration's wait for its answer, which
		// this would otherwise cut.
		ResponseHeaderTimeout: registerTimeout,
		DisableCompression:    true,
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        256 << 10,
	}
}

type dialTimeoutKey struct{}

// WithDialTimeout makes the calls made with ctx give up connecting after d
// instead of the transport's default. A caller with somewhere else to go,
// such as the next supernode of a list, uses it to skip a member that is
// down within a second; once connected, the call runs as usual.
func WithDialTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, dialTimeoutKey{}, d)
}

// Client talks to supernodes, peers and the local peer server.
type Client struct {
	HTTP *http.Client
	// https makes supernode calls use HTTPS (see SecureNodes).
	https bool
	// token is sent to supernodes only, never to peers.
	token string
	// localToken is sent to this host's peer server only (SetLocalToken).
	localToken atomic.Pointer[string]
	// localOwner is told to the peer server at /check (SetLocalOwner).
	localOwner atomic.Pointer[localOwner]
}

// SecureNodes makes supernode calls carry "Authorization: Bearer <token>"
// (when token is set) and, when caFiles are given, go over HTTPS trusting
// only those PEM CAs. Off by default, as a v1 supernode wants.
func (c *Client) SecureNodes(token string, caFiles []string) error {
	c.token = token
	if len(caFiles) == 0 {
		return nil
	}
	pool := x509.NewCertPool()
	for _, f := range caFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("supernode CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("supernode CA %s: no PEM certificate", f)
		}
	}
	tr, ok := c.HTTP.Transport.(*http.Transport)
	if !ok {
		return errors.New("supernode TLS: client has no *http.Transport")
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.https = true
	return nil
}

// New returns a Client on its own tuned transport.
func New() *Client { return &Client{HTTP: &http.Client{Transport: NewTransport()}} }

// UserAgent is sent with every request.
func UserAgent() string { return "dfget/" + version.Version }

// Envelope is a decoded ResultInfo whose data is kept raw until the code
// tells what it holds.
type Envelope struct {
	Code int             `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data"`
}

func (c *Client) do(ctx context.Context, method, u string, body []byte, ctype string) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("build request %s: %w", u, err)
	}
	req.Header.Set("User-Agent", UserAgent())
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("read reply of %s: %w", u, err)
	}
	return b, resp.StatusCode, nil
}

func (c *Client) envelope(ctx context.Context, method, u string, body []byte) (*Envelope, error) {
	b, status, err := c.do(ctx, method, u, body, "application/json;charset=utf-8")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		var e types.ErrorResponse
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("%s: HTTP %d: %s", u, status, e.Message)
		}
		return nil, fmt.Errorf("%s: HTTP %d", u, status)
	}
	var env Envelope
	if len(bytes.TrimSpace(b)) == 0 {
		return &env, nil
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%s: bad reply: %w", u, err)
	}
	return &env, nil
}

// endpoint is a supernode URL; do (which adds the token) is only called
// with these.
func (c *Client) endpoint(node, path string, q url.Values) string {
	u := url.URL{Scheme: "http", Host: node, Path: path}
	if c.https {
		u.Scheme = "https"
	}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// registerTimeout bounds a registration. A supernode
// answers only after its CDN has the origin's response headers: with its
// default sourceTimeout of 10 s, up to 10 s each to connect, for the TLS
// handshake and for the headers, and 10 s more for a second request's
// headers when the origin's answer to revalidating a cached copy sends it
// back for the whole file: 40 s. Giving up sooner leaves a healthy node
// filling while dfget tries the next one, which then reads the origin
// too. Connecting is bounded apart (WithDialTimeout: 1 s when another
// node is left).
const registerTimeout = 45 * time.Second

// Register posts the register request to node (host:port) and returns the
// task data. Any non-200 code is an error.
func (c *Client) Register(ctx context.Context, node string, req *types.RegisterRequest) (*types.RegisterResponseData, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode register request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	env, err := c.envelope(ctx, http.MethodPost, c.endpoint(node, "/peer/registry", nil), body)
	if err != nil {
		return nil, err
	}
	if env.Code != types.CodeSuccess {
		return nil, fmt.Errorf("register at %s: code %d: %s", node, env.Code, env.Msg)
	}
	var d types.RegisterResponseData
	if err := json.Unmarshal(env.Data, &d); err != nil {
		return nil, fmt.Errorf("register at %s: bad data: %w", node, err)
	}
	if d.TaskID == "" {
		return nil, fmt.Errorf("register at %s: reply without task id", node)
	}
	// A piece must carry content past its wrapper (else the piece count
	// divides by zero) and stay within what a supernode ever assigns (the
	// piece buffers are allocated at this size).
	if d.PieceSize <= piece.WrapSize || d.PieceSize > piece.MaxSize {
		return nil, fmt.Errorf("register at %s: piece size %d is outside %d-%d", node, d.PieceSize, piece.WrapSize+1, piece.MaxSize)
	}
	return &d, nil
}

// PullRequest is one /peer/task call: it reports the last piece event and
// asks for more work.
type PullRequest struct {
	TaskID string
	SrcCID string
	DstCID string
	Status int
	Result int
	Range  string
}

// PullPieceTask calls GET /peer/task. The envelope is returned as is; the
// caller dispatches on its code.
func (c *Client) PullPieceTask(ctx context.Context, node string, r PullRequest) (*Envelope, error) {
	q := url.Values{}
	q.Set("taskId", r.TaskID)
	q.Set("srcCid", r.SrcCID)
	q.Set("dstCid", r.DstCID)
	q.Set("status", fmt.Sprint(r.Status))
	q.Set("result", fmt.Sprint(r.Result))
	q.Set("range", r.Range)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.envelope(ctx, http.MethodGet, c.endpoint(node, "/peer/task", q), nil)
}

// ReportPieceSuccess calls GET /peer/piece/suc and wants code 611. Without
// share it adds share=0 (Damselfly: the piece is had but served to no one),
// which a stream sends for a piece the supernode said noShare for or one
// it wrote before a migration; a Dragonfly 1.x supernode ignores it.
func (c *Client) ReportPieceSuccess(ctx context.Context, node, taskID, cid, dstCID, pieceRange string, share bool) error {
	q := url.Values{}
	q.Set("taskId", taskID)
	q.Set("cid", cid)
	q.Set("dstCid", dstCID)
	q.Set("pieceRange", pieceRange)
	if !share {
		q.Set("share", "0")
	}
	return c.want(ctx, http.MethodGet, c.endpoint(node, "/peer/piece/suc", q), types.CodeGetPieceReport)
}

// TaskInfo calls GET /api/v1/tasks/{id}: the task as the supernode knows
// it, its CDN status among the rest.
func (c *Client) TaskInfo(ctx context.Context, node, taskID string) (*types.TaskInfo, error) {
	u := c.endpoint(node, types.TaskInfoPath+url.PathEscape(taskID), nil)
	b, status, err := c.do(ctx, http.MethodGet, u, nil, "")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", u, status)
	}
	var ti types.TaskInfo
	if err := json.Unmarshal(b, &ti); err != nil {
		return nil, fmt.Errorf("%s: bad reply: %w", u, err)
	}
	return &ti, nil
}

// ReportServiceDown calls GET /peer/service/down and wants code 612.
func (c *Client) ReportServiceDown(ctx context.Context, node, taskID, cid string) error {
	q := url.Values{}
	q.Set("taskId", taskID)
	q.Set("cid", cid)
	return c.want(ctx, http.MethodGet, c.endpoint(node, "/peer/service/down", q), types.CodeGetPeerDown)
}

// StreamPiece tells the supernode that the peer with cid caches (cached) or
// no longer caches piece pieceRange of a stream: POST or DELETE
// /peer/piece/stream. It wants code 611.
func (c *Client) StreamPiece(ctx context.Context, node, taskID, cid, pieceRange string, cached bool) error {
	q := url.Values{}
	q.Set("taskId", taskID)
	q.Set("cid", cid)
	q.Set("pieceRange", pieceRange)
	m := http.MethodDelete
	if cached {
		m = http.MethodPost
	}
	return c.want(ctx, m, c.endpoint(node, "/peer/piece/stream", q), types.CodeGetPieceReport)
}

// StreamSupported reports whether node takes stream-cache reports
// (/peer/piece/stream). A Dragonfly 1.x supernode has no such route and
// answers HTTP 404 (405 for a method it lacks); ours answers any request
// there with an envelope, HTTP 200. The probe is a DELETE without a task,
// which changes nothing on a supernode that has the route. A transport
// failure is returned as the error, with supported true: it says nothing.
func (c *Client) StreamSupported(ctx context.Context, node string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, status, err := c.do(ctx, http.MethodDelete, c.endpoint(node, "/peer/piece/stream", nil), nil, "")
	if err != nil {
		return true, err
	}
	return status != http.StatusNotFound && status != http.StatusMethodNotAllowed, nil
}

func (c *Client) want(ctx context.Context, method, u string, code int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	env, err := c.envelope(ctx, method, u, nil)
	if err != nil {
		return err
	}
	if env.Code != code {
		return fmt.Errorf("%s: code %d (%s), want %d", u, env.Code, env.Msg, code)
	}
	return nil
}

// PieceError is the query of GET /peer/piece/error.
type PieceError struct {
	TaskID, Range, SrcCID, DstCID, DstIP, RealMd5, ExpectedMd5, ErrorType string
}

// ReportPieceError calls GET /peer/piece/error. The reply has no body.
func (c *Client) ReportPieceError(ctx context.Context, node string, e PieceError) error {
	q := url.Values{}
	q.Set("taskId", e.TaskID)
	q.Set("range", e.Range)
	q.Set("srcCid", e.SrcCID)
	q.Set("dstCid", e.DstCID)
	q.Set("dstIp", e.DstIP)
	q.Set("realMd5", e.RealMd5)
	q.Set("expectedMd5", e.ExpectedMd5)
	q.Set("errorType", e.ErrorType)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, status, err := c.do(ctx, http.MethodGet, c.endpoint(node, "/peer/piece/error", q), nil, "")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("report piece error: HTTP %d", status)
	}
	return nil
}

// ReportMetrics posts /task/metrics once. The reply body is "null".
func (c *Client) ReportMetrics(ctx context.Context, node string, m *types.TaskMetricsRequest) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode metrics: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, status, err := c.do(ctx, http.MethodPost, c.endpoint(node, "/task/metrics", nil), body, "application/json")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("report metrics: HTTP %d", status)
	}
	return nil
}
