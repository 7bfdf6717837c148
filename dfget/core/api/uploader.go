package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Header names of the peer server's control endpoints.
const (
	HeaderDataDir      = "dataDir"
	HeaderTotalLimit   = "totalLimit"
	HeaderRateLimit    = "rateLimit"
	HeaderTaskID       = "taskID"
	HeaderTaskFileName = "taskFileName"
	HeaderPieceNum     = "pieceNum"
	HeaderPieceSize    = "pieceSize"
	HeaderWindowSize   = "windowSize"
	HeaderSuperNode    = "superNode"
	HeaderCID          = "cid"
	// HeaderStreamRing asks for a shared piece ring at stream registration
	// and, in the answer, is the path the dfget opens it by.
	HeaderStreamRing      = "streamRing"
	HeaderStreamRingSlots = "streamRingSlots"
	// HeaderStreamSlot and HeaderPieceLength commit a piece written into a
	// ring slot (POST /stream/piece without a body).
	HeaderStreamSlot  = "streamSlot"
	HeaderPieceLength = "pieceLength"
	// HeaderNodeToken and HeaderNodeCACerts (comma-separated PEM files)
	// are how the dfget that registers a stream or finishes a task
	// reaches its supernode, for the peer server's reports to it.
	HeaderNodeToken   = "nodeToken"
	HeaderNodeCACerts = "nodeCACerts"
	// HeaderDfgetPID is the dfget's process ID: the peer server drops a
	// stream cache when that process is gone, and keeps the file of an
	// unfinished download (/check) while it runs.
	HeaderDfgetPID = "dfgetPid"
	// HeaderCheckEvery is how often, in milliseconds, the dfget repeats
	// /check while it downloads: a peer server that cannot see its process
	// keeps the unfinished task a few such intervals after the last one.
	HeaderCheckEvery = "checkEvery"
	// HeaderLocalToken carries the peer server's secret (from its meta
	// file) on calls to its local-only endpoints.
	HeaderLocalToken = "localToken"
	// HeaderCheckNonce, HeaderCheckAuth and HeaderCheckProof make the
	// check a challenge (CheckServer): the dfget's fresh nonce, its MAC
	// of it (CheckAuth) standing in for the token, and the server's
	// proof (CheckProof) in the answer.
	HeaderCheckNonce = "checkNonce"
	HeaderCheckAuth  = "checkAuth"
	HeaderCheckProof = "checkProof"
)

// ErrServerUnproven is a listener on the peer server's port that could not
// prove it holds the token host.meta names: not this user's server.
var ErrServerUnproven = errors.New("peer server did not prove it holds its token")

// ErrServerRefused is a check this host's peer server answered, proving
// it holds its token, with an error: the server is up and ours, so
// starting another would not help.
var ErrServerRefused = errors.New("this host's peer server refused the check")

// CheckProof is the peer server's answer to a check's nonce: hex
// HMAC-SHA256 of the nonce under its token.
func CheckProof(token, nonce string) string { return macHex(token, nonce) }

// CheckAuth is what a dfget's check sends instead of the token: the MAC of
// its nonce under another label than CheckProof's, so that a listener
// handed it cannot echo it back as the proof.
func CheckAuth(token, nonce string) string { return macHex(token, "dfget-check-auth\x00"+nonce) }

func macHex(token, msg string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// ValidNonce accepts a check nonce: 16 to 64 bytes in hex.
func ValidNonce(n string) bool {
	if len(n) < 32 || len(n) > 128 {
		return false
	}
	_, err := hex.DecodeString(n)
	return err == nil
}

// SetLocalToken sets the secret of this host's peer server, sent with
// every call to its local-only endpoints but the check (never to other
// peers), which proves the server holds it first (CheckServer). Empty:
// no server, no local calls.
func (c *Client) SetLocalToken(tok string) { c.localToken.Store(&tok) }

// SetLocalOwner makes /check tell the peer server which process registers
// the task and how often it repeats the check (see HeaderDfgetPID,
// HeaderCheckEvery). Zero values say nothing.
func (c *Client) SetLocalOwner(pid int, checkEvery time.Duration) {
	c.localOwner.Store(&localOwner{pid: pid, checkEvery: checkEvery})
}

// localOwner is what SetLocalOwner set.
type localOwner struct {
	pid        int
	checkEvery time.Duration
}

// localCall calls a local-only endpoint of this host's peer server and
// returns the answer's body.
func (c *Client) localCall(ctx context.Context, method, u string, hdr map[string]string, body []byte) (string, error) {
	b, _, err := c.localDo(ctx, method, u, hdr, body)
	return b, err
}

// localDo is peerDo for a local-only endpoint: it adds the server's token.
// Without one (never set, or dropped once the server stopped proving it
// holds it) there is no server of ours to call: whatever listens on the
// port is not asked, so it can neither learn the token nor answer.
func (c *Client) localDo(ctx context.Context, method, u string, hdr map[string]string, body []byte) (string, http.Header, error) {
	tok := c.localToken.Load()
	if tok == nil || *tok == "" {
		return "", nil, fmt.Errorf("%s: %w", u, ErrServerUnproven)
	}
	if hdr == nil {
		hdr = map[string]string{}
	}
	hdr[HeaderLocalToken] = *tok
	return c.peerDo(ctx, method, u, hdr, body)
}

// NodeCreds is how a dfget reaches its supernodes: the bearer token and
// the CA files of --node-token and --node-cacerts. The peer server makes
// its reports about a task with the credentials of the dfget that told it
// about the task, not those of the dfget that started the server.
type NodeCreds struct {
	Token   string
	CACerts []string
}

func (n NodeCreds) addTo(hdr map[string]string) map[string]string {
	if n.Token != "" {
		hdr[HeaderNodeToken] = n.Token
	}
	if len(n.CACerts) > 0 {
		hdr[HeaderNodeCACerts] = strings.Join(n.CACerts, ",")
	}
	return hdr
}

// NodeCredsFrom reads the credentials a request carries.
func NodeCredsFrom(h http.Header) NodeCreds {
	n := NodeCreds{Token: h.Get(HeaderNodeToken)}
	if v := h.Get(HeaderNodeCACerts); v != "" {
		n.CACerts = strings.Split(v, ",")
	}
	return n
}

func peerURL(ip string, port int, path string, q url.Values) string {
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(ip, strconv.Itoa(port)), Path: path}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// peerDo calls a peer server's endpoint and returns the answer's body and
// header.
func (c *Client) peerDo(ctx context.Context, method, u string, hdr map[string]string, body []byte) (string, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return "", nil, fmt.Errorf("build request %s: %w", u, err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.ContentLength = int64(len(body))
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), resp.Header, fmt.Errorf("%s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return string(b), resp.Header, nil
}

// CheckServer calls the peer server's /check/{taskFileName}, which also
// registers the task with it, and returns the body "<name>@<version>".
// host.meta may name the port of a server that died without its cleanup,
// which any local user can now hold, so the check is a challenge: it sends
// a fresh nonce and, instead of the token of SetLocalToken, CheckAuth of
// it; the answer must carry CheckProof of the nonce, else the error is
// ErrServerUnproven. A listener thus never learns the token, and is never
// taken for the server. A proven answer other than 200 is an error wrapping
// ErrServerRefused.
func (c *Client) CheckServer(ctx context.Context, ip string, port int, taskFileName, dataDir string, totalLimit int64) (string, error) {
	u := peerURL(ip, port, "/check/"+url.PathEscape(taskFileName), nil)
	tok := c.localToken.Load()
	if tok == nil || *tok == "" {
		return "", fmt.Errorf("%s: no token to check the server with: %w", u, ErrServerUnproven)
	}
	nonce := hex.EncodeToString(randomBytes(32))
	body, h, err := c.peerDo(ctx, http.MethodGet, u, c.addOwner(map[string]string{
		HeaderDataDir: dataDir, HeaderTotalLimit: strconv.FormatInt(totalLimit, 10),
		HeaderCheckNonce: nonce, HeaderCheckAuth: CheckAuth(*tok, nonce),
	}), nil)
	if h == nil {
		// Nothing answered.
		return body, err
	}
	got, perr := hex.DecodeString(h.Get(HeaderCheckProof))
	want, _ := hex.DecodeString(CheckProof(*tok, nonce))
	if perr != nil || !hmac.Equal(got, want) {
		return "", fmt.Errorf("%s: %w", u, ErrServerUnproven)
	}
	if err != nil {
		return body, fmt.Errorf("%w: %w", ErrServerRefused, err)
	}
	return body, nil
}

// addOwner adds what SetLocalOwner set to a check's headers.
func (c *Client) addOwner(hdr map[string]string) map[string]string {
	if o := c.localOwner.Load(); o != nil {
		if o.pid > 0 {
			hdr[HeaderDfgetPID] = strconv.Itoa(o.pid)
		}
		if o.checkEvery > 0 {
			hdr[HeaderCheckEvery] = strconv.FormatInt(o.checkEvery.Milliseconds(), 10)
		}
	}
	return hdr
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand's documented behaviour)
	return b
}

// FinishTask tells the peer server the task file is complete and whom to
// report its service-down to.
func (c *Client) FinishTask(ctx context.Context, ip string, port int, taskFileName, taskID, cid, superNode string, creds NodeCreds) error {
	q := url.Values{}
	q.Set("taskFileName", taskFileName)
	q.Set("taskID", taskID)
	q.Set("cid", cid)
	q.Set("superNode", superNode)
	_, err := c.localCall(ctx, http.MethodGet, peerURL(ip, port, "/client/finish", q), creds.addTo(map[string]string{}), nil)
	return err
}

// FairRate asks the peer server for this download's share of the host's
// total limit, given the rate it would like.
func (c *Client) FairRate(ctx context.Context, ip string, port int, taskFileName string, want int64) (int64, error) {
	body, err := c.localCall(ctx, http.MethodGet, peerURL(ip, port, "/rate/"+url.PathEscape(taskFileName), nil),
		map[string]string{HeaderRateLimit: strconv.FormatInt(want, 10)}, nil)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(body), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad rate reply %q: %w", body, err)
	}
	return v, nil
}

// StreamTask is what the peer server needs to hold a stream cache.
type StreamTask struct {
	TaskFileName string
	TaskID       string
	CID          string
	SuperNode    string
	PieceSize    int32
	WindowSize   int
	Creds        NodeCreds
	// PID is the streaming dfget's process (0: not sent).
	PID int
}

// StreamRing is the peer server's shared piece ring for a stream: a memory
// file (Path) of Slots piece-sized slots. The zero value means none.
type StreamRing struct {
	Path  string
	Slots int
}

// RegisterStreamTask opens a stream cache on the peer server (POST
// /stream/task), asking for a shared ring; a server that has none to give
// answers without one, and pieces are pushed by HTTP.
func (c *Client) RegisterStreamTask(ctx context.Context, ip string, port int, t StreamTask) (StreamRing, error) {
	hdr := t.Creds.addTo(map[string]string{
		HeaderTaskFileName: t.TaskFileName, HeaderTaskID: t.TaskID, HeaderCID: t.CID, HeaderSuperNode: t.SuperNode,
		HeaderPieceSize: strconv.Itoa(int(t.PieceSize)), HeaderWindowSize: strconv.Itoa(t.WindowSize),
		HeaderStreamRing: "1",
	})
	if t.PID > 0 {
		hdr[HeaderDfgetPID] = strconv.Itoa(t.PID)
	}
	_, h, err := c.localDo(ctx, http.MethodPost, peerURL(ip, port, "/stream/task", nil), hdr, nil)
	if err != nil {
		return StreamRing{}, err
	}
	r := StreamRing{Path: h.Get(HeaderStreamRing)}
	if r.Slots, err = strconv.Atoi(h.Get(HeaderStreamRingSlots)); err != nil || r.Path == "" || r.Slots <= 0 {
		return StreamRing{}, nil
	}
	return r, nil
}

// ReserveStreamSlot asks for the ring slot piece num is to be written into
// (POST /stream/slot).
func (c *Client) ReserveStreamSlot(ctx context.Context, ip string, port int, taskFileName string, num int) (int, error) {
	body, err := c.localCall(ctx, http.MethodPost, peerURL(ip, port, "/stream/slot", nil), map[string]string{
		HeaderTaskFileName: taskFileName, HeaderPieceNum: strconv.Itoa(num),
	}, nil)
	if err != nil {
		return 0, err
	}
	slot, err := strconv.Atoi(strings.TrimSpace(body))
	if err != nil {
		return 0, fmt.Errorf("bad slot reply %q: %w", body, err)
	}
	return slot, nil
}

// CommitStreamSlot tells the peer server that slot holds piece num, length
// bytes wrapped (POST /stream/piece without a body). The server checks the
// wrapper; a failed commit frees the slot.
func (c *Client) CommitStreamSlot(ctx context.Context, ip string, port int, taskFileName string, num, slot, length int) error {
	_, err := c.localCall(ctx, http.MethodPost, peerURL(ip, port, "/stream/piece", nil), map[string]string{
		HeaderTaskFileName: taskFileName, HeaderPieceNum: strconv.Itoa(num),
		HeaderStreamSlot: strconv.Itoa(slot), HeaderPieceLength: strconv.Itoa(length),
	}, nil)
	return err
}

// PushStreamPiece hands a verified wrapped piece to the peer server's stream
// cache (POST /stream/piece).
func (c *Client) PushStreamPiece(ctx context.Context, ip string, port int, taskFileName string, num int, pieceSize int32, wrapped []byte) error {
	_, err := c.localCall(ctx, http.MethodPost, peerURL(ip, port, "/stream/piece", nil), map[string]string{
		HeaderTaskFileName: taskFileName, HeaderPieceNum: strconv.Itoa(num), HeaderPieceSize: strconv.Itoa(int(pieceSize)),
	}, wrapped)
	return err
}

// CloseStreamTask drops a stream cache (DELETE /stream/task); the peer
// server reports every still-cached piece as evicted.
func (c *Client) CloseStreamTask(ctx context.Context, ip string, port int, taskFileName string) error {
	_, err := c.localCall(ctx, http.MethodDelete, peerURL(ip, port, "/stream/task", nil),
		map[string]string{HeaderTaskFileName: taskFileName}, nil)
	return err
}
