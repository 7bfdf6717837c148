package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	xrate "golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
	"github.com/damselfly-p2p/damselfly/pkg/urlutil"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// The peer server's HTTP handlers: the piece requests of other peers, and
// the local-only calls of this host's dfgets (check, finish, rate, stream
// cache). The routes and their guards are in server.go.

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	if n := r.Header.Get(api.HeaderCheckNonce); n != "" {
		// The dfget takes us for its server only with this proof; the
		// body stays v1's. A refusal carries it too, so that the dfget
		// reports it instead of starting another server for its home.
		w.Header().Set(api.HeaderCheckProof, api.CheckProof(s.cfg.Token, n))
	}
	name := mux.Vars(r)["name"]
	if !validName(name) {
		text(w, http.StatusBadRequest, "invalid task file name")
		return
	}
	if d := r.Header.Get(api.HeaderDataDir); d != "" && filepath.Clean(d) != filepath.Clean(s.cfg.DataDir) {
		text(w, http.StatusBadRequest, "dataDir does not match this server's")
		return
	}
	if v := r.Header.Get(api.HeaderTotalLimit); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			text(w, http.StatusBadRequest, "invalid totalLimit")
			return
		}
		if n > 0 {
			s.setTotalLimit(n)
		}
	}
	owner, every := ownerOf(r.Header)
	s.mu.Lock()
	t, ok := s.tasks[name]
	if !ok {
		t = &task{name: name}
		s.tasks[name] = t
	}
	t.accessTime = time.Now()
	t.claim(owner, every)
	s.mu.Unlock()
	text(w, http.StatusOK, name+"@"+version.Version)
}

func (s *Server) handleFinish(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, taskID, cid := q.Get("taskFileName"), q.Get("taskID"), q.Get("cid")
	if !validName(name) || taskID == "" || cid == "" {
		text(w, http.StatusBadRequest, "invalid params")
		return
	}
	s.mu.Lock()
	t, ok := s.tasks[name]
	if !ok {
		t = &task{name: name}
		s.tasks[name] = t
	}
	t.finished, t.rateLimit, t.accessTime = true, 0, time.Now()
	t.taskID, t.cid, t.superNode = taskID, cid, q.Get("superNode")
	t.node = s.nodeClient(api.NodeCredsFrom(r.Header))
	s.mu.Unlock()
	text(w, http.StatusOK, "success")
}

func (s *Server) handleRate(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	req, err := strconv.ParseInt(r.Header.Get(api.HeaderRateLimit), 10, 64)
	if err != nil || req < 0 || !validName(name) {
		text(w, http.StatusBadRequest, "invalid rateLimit")
		return
	}
	s.mu.Lock()
	if t, ok := s.tasks[name]; ok {
		t.rateLimit = req
	}
	var sum int64
	for _, t := range s.tasks {
		if !t.finished {
			sum += t.rateLimit
		}
	}
	total := s.total
	s.mu.Unlock()
	text(w, http.StatusOK, strconv.FormatInt(FairShare(req, total, sum), 10))
}

// pieceRequest is a parsed /peer/file request: the content bytes
// [start, start+length) of the plain file, and whether to wrap them.
type pieceRequest struct {
	num       int
	pieceSize int32
	start     int64
	length    int64
	wrapped   bool
}

// parsePieceRequest reads the Range, pieceNum, pieceSize and cdnSource
// headers. The range is in wrapped coordinates unless cdnSource is source.
func parsePieceRequest(h http.Header) (pieceRequest, error) {
	var p pieceRequest
	start, end, err := pieceRange(h.Get("Range"))
	if err != nil {
		return p, err
	}
	p.wrapped = h.Get("cdnSource") != "source"
	num, err := strconv.Atoi(h.Get(api.HeaderPieceNum))
	if err != nil || num < 0 {
		return p, fmt.Errorf("invalid pieceNum %q", h.Get(api.HeaderPieceNum))
	}
	size, err := strconv.ParseInt(h.Get(api.HeaderPieceSize), 10, 32)
	if err != nil || size <= piece.WrapSize || size > 1<<26 {
		return p, fmt.Errorf("invalid pieceSize %q", h.Get(api.HeaderPieceSize))
	}
	p.num, p.pieceSize = num, int32(size)
	if int64(num) > math.MaxInt64/size {
		// num*size would wrap: the piece starts past any file.
		return p, fmt.Errorf("pieceNum %d is past any file of %d-byte pieces", num, size)
	}
	// end-start, not its length: bytes=0-(2^63-1) has no int64 length.
	if end-start >= size {
		return p, fmt.Errorf("range %d-%d is longer than a piece", start, end)
	}
	if !p.wrapped {
		p.start, p.length = start, end-start+1
		return p, nil
	}
	if start != int64(num)*size {
		return p, fmt.Errorf("range %d-%d does not start piece %d", start, end, num)
	}
	if end-start+1 < piece.WrapSize {
		return p, fmt.Errorf("range %d-%d is shorter than the piece wrapper", start, end)
	}
	p.start = start - int64(num)*piece.WrapSize
	p.length = end - start + 1 - piece.WrapSize
	return p, nil
}

// pieceRange reads a piece request's Range: one range naming both bounds,
// as every dfget sends it (bytes=s-e). An open or suffix range names no
// piece, and several ranges would want a multipart answer.
func pieceRange(v string) (start, end int64, err error) {
	br, err := urlutil.ParseByteRange(v)
	if err != nil {
		return 0, 0, fmt.Errorf("piece request: %w", err)
	}
	if br.Suffix > 0 || br.Last < 0 {
		return 0, 0, fmt.Errorf("piece request: invalid Range %q: want bytes=start-end", v)
	}
	return br.First, br.Last, nil
}

// handleFile serves a piece of a task file (GET/HEAD /peer/file/{name}):
// from the stream cache while the task streams, else from its file.
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	if !validName(name) {
		text(w, http.StatusBadRequest, "invalid task file name")
		return
	}
	pr, err := parsePieceRequest(r.Header)
	if err != nil {
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	sc := s.streams[name]
	t := s.tasks[name]
	if t != nil {
		t.accessTime = time.Now()
	}
	s.mu.Unlock()
	if sc != nil {
		s.serveStream(w, r, sc, pr)
		return
	}
	if t == nil {
		text(w, http.StatusNotFound, "unknown task file")
		return
	}
	s.serveFile(w, r, name, pr)
}

// serveFile sends the content bytes pr asks for from a task's service
// file, wrapped unless the request is of the source pattern.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, name string, pr pieceRequest) {
	f, err := openRegular(filepath.Join(s.cfg.DataDir, name+ServiceSuffix))
	if err != nil {
		text(w, http.StatusNotFound, "task file not available")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		text(w, http.StatusInternalServerError, "stat task file")
		return
	}
	n := pr.length
	if rest := st.Size() - pr.start; rest < n {
		n = rest
	}
	if n < 0 || (n == 0 && (pr.length > 0 || !pr.wrapped)) {
		text(w, http.StatusRequestedRangeNotSatisfiable, "range not satisfiable")
		return
	}
	total := n
	if pr.wrapped {
		total += piece.WrapSize
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
	w.WriteHeader(http.StatusPartialContent)
	if r.Method == http.MethodHead {
		return
	}
	out := s.uploadWriter(r.Context(), w, total)
	copyContent := func(w io.Writer) error { return copyAt(w, f, pr.start, n) }
	if pr.wrapped {
		err = piece.WriteWrapped(out, n, pr.pieceSize, copyContent)
	} else {
		err = copyContent(out)
	}
	if err != nil {
		s.log.Debugf("serve %s piece %d: %v", name, pr.num, err)
	}
}

// serveStream sends a piece from a stream cache. The cache holds wrapped
// pieces only, so a source-pattern request is not found there. When the
// cache lets no more responses hold its buffers, or none more to the
// requester's address, the answer is 503: the fetching dfget (ours or a
// Dragonfly 1.x one) counts it a failed piece, reports no piece error,
// and is scheduled elsewhere.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, sc *streamCache, pr pieceRequest) {
	err := errNotCached
	if pr.wrapped {
		err = sc.send(pr.num, pr.length+piece.WrapSize, remoteIP(r), func(b []byte) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.WriteHeader(http.StatusPartialContent)
			if r.Method == http.MethodHead {
				return
			}
			if _, err := s.uploadWriter(r.Context(), w, int64(len(b))).Write(b); err != nil {
				s.log.Debugf("serve stream %s piece %d: %v", sc.TaskFileName, pr.num, err)
			}
		})
	}
	switch {
	case errors.Is(err, errSendsBusy):
		text(w, http.StatusServiceUnavailable, err.Error())
	case err != nil:
		text(w, http.StatusNotFound, err.Error())
	}
}

// remoteIP is the address a request came from, without its port: a peer
// opens a connection per concurrent piece, each from another port.
func remoteIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// Every piece response has a write deadline of its own: uploadGrace plus
// its size at uploadFloorRate, the slowest reader served. Without it only
// the server's WriteTimeout (minutes) bounds what a peer that asks and
// never reads holds: a stream piece's buffer, or for a file piece a
// goroutine, the open file and the connection. The floor is Dragonfly
// 1.x's default --minrate, below which a 1.x dfget gives a piece up
// itself (its piece timeout is pieceSize/minRate + 10 s): 94 s for a
// 4 MiB piece. Time spent waiting on the host upload limiter is ours,
// not the peer's, and pushes the deadline back.
const (
	uploadGrace     = 30 * time.Second
	uploadFloorRate = 64 << 10 // bytes per second
)

// uploadDeadline is how long a peer may take to read an n-byte piece.
func (s *Server) uploadDeadline(n int64) time.Duration {
	return s.uploadGrace + time.Duration(float64(n)/s.uploadFloorRate*float64(time.Second))
}

// uploadWriter sets the write deadline of a piece response of n bytes on
// w and returns the writer to send it through: w itself without a host
// upload limit (so a file piece still goes by sendfile), else one that
// waits on the limiter.
func (s *Server) uploadWriter(ctx context.Context, w http.ResponseWriter, n int64) io.Writer {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(s.uploadDeadline(n))
	// A writer without deadlines (a test's recorder) is served anyway.
	_ = rc.SetWriteDeadline(deadline)
	s.mu.Lock()
	l := s.limiter
	s.mu.Unlock()
	if l == nil {
		return w
	}
	return &limitedUpload{ctx: ctx, w: w, rc: rc, l: l, deadline: deadline}
}

// limitedUpload writes a piece response through the host upload limiter
// (--totallimit covers every upload of the host, stream pieces too),
// pushing the response's write deadline back by each wait.
type limitedUpload struct {
	ctx      context.Context
	w        io.Writer
	rc       *http.ResponseController
	l        *xrate.Limiter
	deadline time.Time
}

func (u *limitedUpload) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), max(u.l.Burst(), 1))
		t0 := time.Now()
		if err := u.l.WaitN(u.ctx, n); err != nil {
			return written, fmt.Errorf("wait on the upload limit: %w", err)
		}
		u.deadline = u.deadline.Add(time.Since(t0))
		_ = u.rc.SetWriteDeadline(u.deadline)
		m, err := u.w.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// handleStreamTask registers (POST) or drops (DELETE) the stream cache of
// a streaming dfget. A registration that asks for a ring gets its path and
// slot count in the answer's headers.
func (s *Server) handleStreamTask(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get(api.HeaderTaskFileName)
	if !validName(name) {
		text(w, http.StatusBadRequest, "invalid task file name")
		return
	}
	if r.Method == http.MethodDelete {
		s.closeStream(name)
		text(w, http.StatusOK, "success")
		return
	}
	size, err1 := strconv.ParseInt(r.Header.Get(api.HeaderPieceSize), 10, 32)
	wnd, err2 := strconv.Atoi(r.Header.Get(api.HeaderWindowSize))
	t := api.StreamTask{TaskFileName: name, TaskID: r.Header.Get(api.HeaderTaskID), CID: r.Header.Get(api.HeaderCID),
		SuperNode: r.Header.Get(api.HeaderSuperNode), PieceSize: int32(size), WindowSize: wnd}
	if err1 != nil || err2 != nil || size <= piece.WrapSize || wnd < 1 || wnd > 1024 || t.TaskID == "" || t.CID == "" {
		text(w, http.StatusBadRequest, "invalid stream task")
		return
	}
	var rg *ring
	if r.Header.Get(api.HeaderStreamRing) != "" {
		// Twice the window: evicted pieces still being sent keep their
		// slots. Without a ring the dfget pushes piece bodies.
		var err error
		if rg, err = newRing(2*wnd, int(size)); err != nil {
			s.log.Infof("stream %s: no shared ring, pieces come by HTTP: %v", name, err)
		} else {
			w.Header().Set(api.HeaderStreamRing, rg.path)
			w.Header().Set(api.HeaderStreamRingSlots, strconv.Itoa(len(rg.busy)))
		}
	}
	var owner proc
	if pid, err := strconv.Atoi(r.Header.Get(api.HeaderDfgetPID)); err == nil && pid > 0 {
		owner = procOf(pid)
	}
	s.openStream(t, rg, api.NodeCredsFrom(r.Header), owner)
	text(w, http.StatusOK, "success")
}

// handleStreamPiece caches a piece the streaming dfget pushes (POST
// /stream/piece): its body, or with a slot header the commit of a ring
// slot it wrote.
func (s *Server) handleStreamPiece(w http.ResponseWriter, r *http.Request) {
	num, err := strconv.Atoi(r.Header.Get(api.HeaderPieceNum))
	sc := s.stream(r.Header.Get(api.HeaderTaskFileName))
	if sc == nil || err != nil || num < 0 {
		text(w, http.StatusBadRequest, "unknown stream task or bad pieceNum")
		return
	}
	if v := r.Header.Get(api.HeaderStreamSlot); v != "" {
		slot, err := strconv.Atoi(v)
		if err == nil {
			err = sc.commitSlot(num, slot, r.Header.Get(api.HeaderPieceLength))
		} else {
			err = errors.New("slot not reserved for this piece")
		}
		streamAnswer(w, err)
		return
	}
	if r.ContentLength < piece.WrapSize || r.ContentLength > int64(sc.PieceSize) {
		text(w, http.StatusBadRequest, "bad piece length")
		return
	}
	streamAnswer(w, sc.push(num, r.Body, int(r.ContentLength)))
}

// handleStreamSlot reserves a ring slot for a piece (POST /stream/slot):
// room is made in the window as for a push, and the slot number is the
// answer. 503 means every slot is busy: push the body instead.
func (s *Server) handleStreamSlot(w http.ResponseWriter, r *http.Request) {
	num, err := strconv.Atoi(r.Header.Get(api.HeaderPieceNum))
	sc := s.stream(r.Header.Get(api.HeaderTaskFileName))
	if sc == nil || err != nil || num < 0 {
		text(w, http.StatusBadRequest, errNoRing.Error())
		return
	}
	slot, err := sc.reserveSlot(num, s.slotTTL)
	if err != nil {
		streamAnswer(w, err)
		return
	}
	text(w, http.StatusOK, strconv.Itoa(slot))
}

// streamAnswer answers a stream cache call: success, or its error with
// the status the dfget acts on.
func streamAnswer(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		text(w, http.StatusOK, "success")
	case errors.Is(err, errStreamClosed):
		text(w, http.StatusGone, err.Error())
	case errors.Is(err, errRingFull):
		text(w, http.StatusServiceUnavailable, err.Error())
	default:
		text(w, http.StatusBadRequest, err.Error())
	}
}
