package cdn

// The cluster source: a task whose home is another live member of the
// supernode's cluster is read from that member, not from the origin, so the
// origin serves each file once per cluster. The home answers
// POST /api/v1/cluster/fetch with the file as a stream of frames, one per
// wrapped piece in order, each carrying the BLAKE3 digest the home computed
// when it wrote the piece; the bytes are read back from its cache file. The
// reader here checks every piece against that digest before its content
// goes on to the cutter and writers, which cut, wrap and hash it again as
// for any source: a member that sends a wrong piece (a damaged disk, a
// bug) is caught, and the rest of the file comes from the origin, resumed
// after the last good byte with Range (see toOrigin). A home that is
// down, refuses or stalls costs the same switch.
//
// Hops are bounded at one: a home serves a cluster fetch from its own cache
// and the origin only (the task manager never routes such a task again),
// and a supernode whose CDN is itself reading a task from a member refuses
// to serve that task to another (MemberOf), so two supernodes with
// disagreeing lists cannot wait on each other: the asker reads the origin.
// A home whose own fill of the task waits for a slot says so, and the
// asker waits for that fill without a slot (homewait.go).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/tlsconf"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
)

// ClusterConfig is how the CDN talks to other members.
type ClusterConfig struct {
	// Self is this supernode's member ID, sent to the home for its logs.
	Self string
	// Token is sent as "Authorization: Bearer" (members share the API
	// token).
	Token string
	// DialTimeout bounds connecting to a member: one that is listed but
	// gone costs at most this before the origin is read.
	DialTimeout time.Duration
	// TLS, when set, reaches members over HTTPS with it.
	TLS *tls.Config
}

// Frame layout: num (uint32), length (uint32), the piece's BLAKE3 digest in
// hex, then length bytes of the wrapped piece. A frame numbered frameEnd
// closes a complete file; one numbered frameErr carries the home's error
// message instead of a piece; one numbered frameBeat (empty) says the home
// is alive but still waiting for its next piece. The stream has no version:
// a home sends frameBeat only to an asker that asked for it
// (ClusterFetchRequest.KeepAliveMillis), as an older asker takes any frame
// but the next piece for a broken stream.
const (
	frameHead = 8 + 64
	frameEnd  = 1<<32 - 1
	frameErr  = 1<<32 - 2
	frameBeat = 1<<32 - 3
)

// minKeepAlive bounds how often a home sends keep-alive frames, whatever
// an asker asks.
const minKeepAlive = 100 * time.Millisecond

// Fallback reasons (the label of the fallback counter).
const (
	reasonUnreachable = "unreachable"
	reasonRefused     = "refused"
	reasonDigest      = "digest"
	reasonBroken      = "broken"
)

func newMemberClient(cfg Config) *http.Client {
	d := &net.Dialer{Timeout: cfg.Cluster.DialTimeout, KeepAlive: 30 * time.Second}
	// The home answers once its own source answered: the same bound. A
	// handshake is part of connecting, and gets its bound: the fill's
	// context has no deadline, and nothing else ends a member that
	// accepts the connection but never answers its TLS handshake.
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, ResponseHeaderTimeout: cfg.SourceTimeout + cfg.Cluster.DialTimeout,
		TLSHandshakeTimeout: cfg.Cluster.DialTimeout, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		TLSClientConfig: cfg.Cluster.TLS}}
}

// open is the seam between the origin and the cluster: src.Via names the
// member to read from ("" is the origin). A member that cannot start the
// fetch sends the CDN to the origin with the request it planned.
func (m *Manager) open(ctx context.Context, src Source, extra map[string]string) (*http.Response, error) {
	if src.Via == "" {
		return m.get(ctx, src, extra)
	}
	resp, reason, err := m.fromMember(ctx, src)
	if err == nil {
		return resp, nil
	}
	if errors.Is(err, errHomeWaits) {
		// The fill waits for the home's (homewait.go), not the origin.
		return nil, err
	}
	m.fallback(src, reason, err)
	return m.get(ctx, src, extra)
}

func (m *Manager) fallback(src Source, reason string, err error) {
	m.metrics.ClusterFallbacks.WithLabelValues(reason).Inc()
	m.log.WithField("task", src.TaskID).WithField("member", src.Via).WithError(err).Warnf("cluster fetch %s: reading the origin", reason)
}

// fromMember asks src.Via for the task and returns its stream as the body
// of a 200 answer of the file's length, as an origin would give it.
func (m *Manager) fromMember(ctx context.Context, src Source) (*http.Response, string, error) {
	// Six keep-alives per stall bound: a home waiting on a slow origin is
	// never taken for a stalled one.
	ask := types.ClusterFetchRequest{TaskID: src.TaskID, RawURL: src.RawURL, TaskURL: src.TaskURL,
		Headers: src.Headers, Md5: src.Md5, Identifier: src.Identifier, Insecure: src.Insecure, RootCAs: src.RootCAs,
		From: m.cfg.Cluster.Self, KeepAliveMillis: max((m.stallBound() / 6).Milliseconds(), 1)}
	if !src.Digest.IsZero() {
		ask.Digest = src.Digest.String()
	}
	body, err := json.Marshal(ask)
	if err != nil {
		return nil, reasonBroken, fmt.Errorf("cluster fetch request: %w", err)
	}
	// Marked before asking: two members asking each other at once both
	// refuse, rather than each waiting for the other's answer.
	m.viaMember.Store(src.TaskID, src.Via)
	mctx, mcancel := context.WithCancel(ctx)
	fail := func(reason string, err error) (*http.Response, string, error) {
		mcancel()
		m.viaMember.Delete(src.TaskID)
		return nil, reason, err
	}
	req, err := m.memberRequest(mctx, http.MethodPost, src.Via, types.ClusterFetchPath, bytes.NewReader(body))
	if err != nil {
		return fail(reasonBroken, fmt.Errorf("cluster fetch request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.members.Do(req)
	if err != nil {
		return fail(reasonUnreachable, fmt.Errorf("cluster fetch from %s: %w", src.Via, err))
	}
	length, err := checkMemberAnswer(resp, src.TaskID)
	if err != nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusConflict {
			return fail(reasonRefused, err)
		}
		return fail(reasonBroken, err)
	}
	mb := &memberBody{m: m, ctx: ctx, src: src, resp: resp, cancel: mcancel, length: length}
	mb.r = bufio.NewReaderSize(aliveReader{r: resp.Body, b: mb}, 64<<10)
	mb.onMember.Store(true)
	h := http.Header{}
	for _, k := range []string{"ETag", "Last-Modified"} {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	mb.home = h
	mb.lastModifiedStrong = h.Get("Last-Modified") != "" && resp.Header.Get(types.ClusterHeaderLastModifiedStrong) == "1"
	mb.validator, mb.etag = homeValidator(h, mb.lastModifiedStrong)
	return &http.Response{StatusCode: http.StatusOK, ContentLength: length, Header: h, Body: mb}, "", nil
}

// homeValidator is the validator a resume from the origin asks If-Range
// with ("" for none): the home's ETag if it is strong (RFC 9110 13.1.5
// takes no weak ETag there), else its Last-Modified if the home vouched
// that it was strong; etag tells which.
func homeValidator(h http.Header, lastModifiedStrong bool) (string, bool) {
	if etag := h.Get("ETag"); strongETag(etag) {
		return etag, true
	}
	if lastModifiedStrong {
		return h.Get("Last-Modified"), false
	}
	return "", false
}

// memberRequest is a request to member's API at path, with the cluster's
// token (members share the API token).
func (m *Manager) memberRequest(ctx context.Context, method, member, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, tlsconf.BaseURL(m.cfg.Cluster.TLS, member)+path, body)
	if err != nil {
		return nil, fmt.Errorf("request to member %s: %w", member, err)
	}
	if m.cfg.Cluster.Token != "" {
		req.Header.Set("Authorization", "Bearer "+m.cfg.Cluster.Token)
	}
	return req, nil
}

// checkMemberAnswer reads the home's status and headers: the task must be
// the one asked for. It returns the file's length (-1 when unknown), or
// an error wrapping errHomeWaits when the home's own fill of the task
// waits for a slot.
func checkMemberAnswer(resp *http.Response, taskID string) (int64, error) {
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("cluster fetch answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusConflict && fillWaits(msg) {
			return 0, fmt.Errorf("%w: %w", errHomeWaits, err)
		}
		return 0, err
	}
	if got := resp.Header.Get(types.ClusterHeaderTaskID); got != taskID {
		return 0, fmt.Errorf("cluster fetch answered task %q, want %s", got, taskID)
	}
	length, err := strconv.ParseInt(resp.Header.Get(types.ClusterHeaderFileLength), 10, 64)
	if err != nil || length < -1 {
		return 0, fmt.Errorf("cluster fetch answered a bad length %q", resp.Header.Get(types.ClusterHeaderFileLength))
	}
	return length, nil
}

// Validators are the source's ETag and Last-Modified of a task's cache
// file, as a member sends them with the file: the asker keeps them in its
// own meta and resumes from the origin only if they still hold. The asker
// never sees the origin's Date, so Last-Modified is sent only when it is
// strong, and marked so (ClusterHeaderLastModifiedStrong): an asker that
// predates the mark would resume with any date it is given.
func (m *Manager) Validators(taskID string) http.Header {
	h := http.Header{}
	meta, err := m.store.ReadMeta(taskID)
	if err != nil {
		return h
	}
	if meta.ETag != "" {
		h.Set("ETag", meta.ETag)
	}
	if date := strongDate(meta); date != "" {
		h.Set("Last-Modified", date)
		h.Set(types.ClusterHeaderLastModifiedStrong, "1")
	}
	return h
}

// MemberOf is the member a task's CDN is reading from right now, or whose
// fill it waits for ("" when it reads the origin, or runs not at all).
func (m *Manager) MemberOf(taskID string) string {
	v, _ := m.viaMember.Load(taskID)
	s, _ := v.(string)
	return s
}

// sourceCounter is the counter of a body's bytes as the CDN reads them: a
// member's body counts its own, split between the member and the origin.
func (m *Manager) sourceCounter(body io.Reader) prometheus.Counter {
	if _, ok := body.(*memberBody); ok {
		return metrics.OrCounter(nil)
	}
	return m.metrics.DownloadBytes
}

// memberBody is the content of a file read from a member, verified piece
// by piece, and from the origin once the member failed.
//
// The CDN's stall watchdog (watchBody) times it: any byte from the home,
// a keep-alive frame too, resets it (alive), and when it fires while the
// home is still read it drops the home (drop) instead of failing the
// fill. One timer thus bounds both the home's silence and the origin's,
// at the stall bound the docs give; the rate floor holds the home to the
// origin's minimum too, over its stream's bytes, unless it sent a
// keep-alive (it then waits for its own origin, which it times).
type memberBody struct {
	m       *Manager
	ctx     context.Context
	src     Source
	resp    *http.Response
	cancel  context.CancelFunc
	r       *bufio.Reader
	length  int64  // content length, -1 when unknown
	num     int    // the next piece expected
	off     int64  // content bytes verified so far
	pending []byte // verified content not yet read
	buf     []byte
	ended   bool          // the member closed the file
	origin  io.ReadCloser // after a switch to the origin
	// validator is the home's strong ETag (etag set) or else its strong
	// Last-Modified of the file ("" for neither): a resume from the origin
	// asks If-Range with it, so a file that changed since is not
	// completed with another version's bytes.
	validator string
	etag      bool
	// lastModifiedStrong is the home's word that its Last-Modified is a
	// strong validator (it saw the origin's Date with it).
	lastModifiedStrong bool
	// home is the home's ETag and Last-Modified, which an origin's 206
	// after the switch must not contradict.
	home http.Header
	// alive resets the stall watchdog; set by watchBody before the first
	// Read.
	alive func()
	// onMember is set while the home is read; dropped holds why the
	// watchdog dropped it. sent counts the home's bytes, and beat is set
	// by a keep-alive, since the watchdog's last window. All are touched
	// by the watchdog's goroutines.
	onMember, beat atomic.Bool
	dropped        atomic.Pointer[error]
	sent           atomic.Int64
}

// aliveReader reads the home's stream, telling the watchdog of each byte.
type aliveReader struct {
	r io.Reader
	b *memberBody
}

func (a aliveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.b.sent.Add(int64(n))
		a.b.keepAlive()
	}
	return n, err
}

func (b *memberBody) keepAlive() {
	if b.alive != nil {
		b.alive()
	}
}

// drop stops reading the home, silent or too slow (why); it reports
// false when the home is no longer read (the origin is, and its stall
// fails the fill).
func (b *memberBody) drop(why error) bool {
	if !b.onMember.Load() {
		return false
	}
	b.dropped.CompareAndSwap(nil, &why)
	b.cancel()
	return true
}

// window is the home's bytes since the last call, and whether one of them
// was a keep-alive (the home waits for its origin, which it times itself).
func (b *memberBody) window() (int64, bool) {
	return b.sent.Swap(0), b.beat.Swap(false)
}

func (b *memberBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		switch {
		case b.origin != nil:
			n, err := b.origin.Read(p)
			b.m.metrics.DownloadBytes.Add(float64(n))
			return n, err
		case b.ended:
			return 0, io.EOF
		}
		if reason, err := b.next(); err != nil {
			if cerr := b.ctx.Err(); cerr != nil {
				return 0, cerr
			}
			if why := b.dropped.Load(); why != nil {
				err = fmt.Errorf("%w: %w", *why, err)
			}
			if err := b.toOrigin(reason, err); err != nil {
				return 0, err
			}
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// next reads one frame: a piece, checked against its digest, becomes
// pending; the end frame ends the body.
func (b *memberBody) next() (string, error) {
	var head [frameHead]byte
	if _, err := io.ReadFull(b.r, head[:]); err != nil {
		return reasonBroken, fmt.Errorf("cluster stream: %w", err)
	}
	num, n := binary.BigEndian.Uint32(head[:4]), binary.BigEndian.Uint32(head[4:8])
	switch {
	case num == frameEnd:
		if b.length >= 0 && b.off != b.length {
			return reasonBroken, fmt.Errorf("cluster stream ended at %d of %d bytes", b.off, b.length)
		}
		b.ended = true
		b.closeMember()
		return "", nil
	case num == frameErr:
		msg, _ := io.ReadAll(io.LimitReader(b.r, int64(min(n, 4096))))
		return reasonBroken, fmt.Errorf("home failed: %s", msg)
	case num == frameBeat && n == 0:
		// The home waits for its origin; the bytes reset the watchdog.
		b.beat.Store(true)
		return "", nil
	case int(num) != b.num || n < piece.WrapSize || n > 1<<30:
		return reasonBroken, fmt.Errorf("cluster stream: frame %d of %d bytes, want piece %d", num, n, b.num)
	}
	want, err := digest.ParseHex(digest.BLAKE3, string(head[8:]))
	if err != nil {
		return reasonBroken, fmt.Errorf("cluster stream: piece %d: %w", num, err)
	}
	if cap(b.buf) < int(n) {
		b.buf = make([]byte, n)
	}
	wrapped := b.buf[:n]
	if _, err := io.ReadFull(b.r, wrapped); err != nil {
		return reasonBroken, fmt.Errorf("cluster stream: piece %d: %w", num, err)
	}
	if err := want.Verify(wrapped); err != nil {
		return reasonDigest, fmt.Errorf("piece %d from %s: %w", num, b.src.Via, err)
	}
	content, err := piece.Unwrap(wrapped)
	if err != nil || (b.length >= 0 && b.off+int64(len(content)) > b.length) {
		return reasonBroken, fmt.Errorf("cluster stream: piece %d malformed or past the end: %v", num, err)
	}
	b.m.metrics.ClusterBytes.Add(float64(len(content)))
	b.pending, b.num, b.off = content, b.num+1, b.off+int64(len(content))
	return "", nil
}

func (b *memberBody) closeMember() {
	if b.resp == nil {
		return
	}
	b.onMember.Store(false)
	b.cancel()
	b.resp.Body.Close()
	b.resp = nil
	b.m.viaMember.Delete(b.src.TaskID)
}

func (b *memberBody) Close() error {
	b.closeMember()
	if b.origin != nil {
		return b.origin.Close()
	}
	return nil
}

// ServeMember writes a task's file to another member as frames, each
// piece as soon as it is written (from the cache file, with the digest
// computed when it was written), and flushes after each. While it waits
// for a piece it sends a keep-alive frame every keepAlive (none when 0:
// the asker did not ask for them). It returns when the file was sent
// whole, the fetch failed (after an error frame), or ctx ends.
func (m *Manager) ServeMember(ctx context.Context, taskID string, w io.Writer, flush func() error, keepAlive time.Duration) error {
	cf := m.file(taskID)
	if cf == nil || cf.source {
		return writeErrFrame(w, flush, fmt.Errorf("task %s has no cache file", taskID))
	}
	if cf.isWaiting() {
		// A member never waits on this one's line: its fill holds a slot
		// there, which the fills ahead here could be waiting for.
		return writeErrFrame(w, flush, fmt.Errorf("task %s waits for a fill slot", taskID))
	}
	beat := &beater{w: w, flush: flush, every: keepAlive, last: time.Now()}
	if keepAlive > 0 {
		beat.every = max(keepAlive, minKeepAlive)
	}
	// The cache file exists once the first piece is written: opened then.
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var buf []byte
	for num := 0; ; num++ {
		size, d, err := m.awaitPiece(ctx, cf, num, beat)
		if err != nil {
			return writeErrFrame(w, flush, err)
		}
		if size == 0 {
			return writeFrame(w, flush, frameEnd, nil, "")
		}
		if f == nil {
			if f, err = os.Open(m.store.DataPath(taskID)); err != nil {
				return writeErrFrame(w, flush, fmt.Errorf("open cache of %s: %w", taskID, err))
			}
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		if _, err := f.ReadAt(buf[:size], int64(num)*int64(cf.pieceSize)); err != nil {
			return writeErrFrame(w, flush, fmt.Errorf("read piece %d: %w", num, err))
		}
		if err := writeFrame(w, flush, uint32(num), buf[:size], d.Hex()); err != nil {
			return err
		}
		beat.last = time.Now()
	}
}

// pieceWaitStep is how often a member's stream looks for the next piece:
// small beside the time a piece takes to come from the origin.
const pieceWaitStep = 10 * time.Millisecond

// beater sends the keep-alive frames of a member's stream.
type beater struct {
	w     io.Writer
	flush func() error
	every time.Duration // 0: none
	last  time.Time     // the last frame sent
}

// tick sends a keep-alive frame if nothing was sent for every.
func (b *beater) tick() error {
	if b.every <= 0 || time.Since(b.last) < b.every {
		return nil
	}
	if err := writeFrame(b.w, b.flush, frameBeat, nil, ""); err != nil {
		return fmt.Errorf("keep-alive: %w", err)
	}
	b.last = time.Now()
	return nil
}

// awaitPiece waits until piece num is written and returns its wrapped size
// and digest; size 0 means the file ended before num. It keeps the stream
// alive meanwhile.
func (m *Manager) awaitPiece(ctx context.Context, cf *cacheFile, num int, beat *beater) (int, digest.Digest, error) {
	for {
		size, d, done, ok := cf.pieceState(num)
		switch {
		case size > 0:
			return size, d, nil
		case done && !ok:
			return 0, digest.Digest{}, errors.New("the fetch failed")
		case done:
			return 0, digest.Digest{}, nil
		}
		select {
		case <-ctx.Done():
			return 0, digest.Digest{}, ctx.Err()
		case <-cf.finished:
		case <-time.After(pieceWaitStep):
		}
		if err := beat.tick(); err != nil {
			return 0, digest.Digest{}, err
		}
	}
}

// pieceState is piece num's wrapped size and digest once it is written
// (size 0 before), and whether the fetch ended, and well.
func (cf *cacheFile) pieceState(num int) (int, digest.Digest, bool, bool) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if cf.ready.Test(uint(num)) && num < len(cf.blake3s) && !cf.blake3s[num].IsZero() {
		size := int64(cf.pieceSize)
		if num < len(cf.lens) && cf.lens[num] > 0 {
			size = int64(cf.lens[num])
		} else if cf.done && cf.wrappedLen >= 0 {
			size = min(size, cf.wrappedLen-int64(num)*int64(cf.pieceSize))
		}
		return int(size), cf.blake3s[num], cf.done, cf.ok
	}
	return 0, digest.Digest{}, cf.done, cf.ok
}

func writeFrame(w io.Writer, flush func() error, num uint32, data []byte, hexDigest string) error {
	var head [frameHead]byte
	binary.BigEndian.PutUint32(head[:4], num)
	binary.BigEndian.PutUint32(head[4:8], uint32(len(data)))
	copy(head[8:], hexDigest)
	if _, err := w.Write(head[:]); err != nil {
		return fmt.Errorf("cluster stream: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("cluster stream: %w", err)
	}
	return flush()
}

// writeErrFrame tells the asker why the file stops, and returns err.
func writeErrFrame(w io.Writer, flush func() error, err error) error {
	msg := []byte(err.Error())
	var head [frameHead]byte
	binary.BigEndian.PutUint32(head[:4], frameErr)
	binary.BigEndian.PutUint32(head[4:8], uint32(len(msg)))
	if _, werr := w.Write(append(head[:], msg...)); werr == nil {
		_ = flush()
	}
	return err
}
