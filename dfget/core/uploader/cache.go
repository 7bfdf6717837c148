package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// streamCache holds the last window pieces of a streaming dfget so other
// peers can fetch them. It evicts FIFO and tells the supernode about every
// piece it caches and evicts, in order, through one notifier goroutine.
type streamCache struct {
	api.StreamTask
	pieces map[int]*cached
	order  []int
	// free holds evicted buffers for reuse, so the cache's memory stays
	// about window x piece size instead of growing with the garbage.
	free [][]byte
	// reserved counts pushes being received: they hold buffers, so they
	// count against the window too.
	reserved int
	// ring, if the dfget asked for one, holds the pieces pushed through
	// slots; pending maps a reserved slot to its reservation.
	ring    *ring
	pending map[int]reservation
	// sending counts responses still sending a cached piece; shut is set
	// when the cache is dropped, and the ring is unmapped once both say so.
	sending int
	shut    bool
	// node reaches SuperNode with the streaming dfget's credentials.
	node *api.Client
	// owner is the streaming dfget's process, if it said which: a dfget
	// killed mid-stream never drops its cache, so the server does.
	owner proc

	// notes is an unbounded queue so a slow supernode never blocks the
	// streaming dfget's pushes; it holds at most two notes per piece.
	qmu    sync.Mutex
	notes  []streamNote
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

func (sc *streamCache) enqueue(n streamNote) {
	sc.qmu.Lock()
	sc.notes = append(sc.notes, n)
	sc.qmu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

func (sc *streamCache) close() {
	sc.qmu.Lock()
	sc.closed = true
	sc.qmu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// next blocks until a note is queued or the cache is closed and drained.
func (sc *streamCache) next() (streamNote, bool) {
	for {
		sc.qmu.Lock()
		if len(sc.notes) > 0 {
			n := sc.notes[0]
			sc.notes = sc.notes[1:]
			sc.qmu.Unlock()
			return n, true
		}
		closed := sc.closed
		sc.qmu.Unlock()
		if closed {
			return streamNote{}, false
		}
		<-sc.wake
	}
}

// cached is one piece in the cache; refs counts responses still sending it,
// so its buffer is recycled only when none is.
type cached struct {
	b       []byte
	slot    int // ring slot holding b, or -1 for a heap buffer
	refs    int
	evicted bool
}

// recycle returns an evicted piece's buffer to the free list, or its ring
// slot to the ring. Caller holds the server's mu.
func (sc *streamCache) recycle(c *cached) {
	switch {
	case c.refs != 0:
	case c.slot >= 0:
		if sc.ring != nil {
			sc.ring.release(c.slot)
		}
	case len(sc.free) < sc.WindowSize:
		sc.free = append(sc.free, c.b[:0])
	}
}

// shutRing marks the cache dropped and unmaps its ring unless a response
// is still sending from it (serveStream then does). Caller holds the
// server's mu.
func (sc *streamCache) shutRing() {
	sc.shut = true
	if sc.sending == 0 && sc.ring != nil {
		sc.ring.close()
		sc.ring = nil
	}
}

// reservation is a ring slot reserved for piece num at a time.
type reservation struct {
	num int
	at  time.Time
}

// expireReservations frees the slots reserved longer than ttl ago: a
// dfget writes a reserved slot and commits it within milliseconds, so such
// a reservation was lost (its commit request failed) and would otherwise
// hold a slot and a place in the window until the stream ends. Caller
// holds the server's mu.
func (sc *streamCache) expireReservations(ttl time.Duration) {
	for slot, r := range sc.pending {
		if time.Since(r.at) > ttl {
			delete(sc.pending, slot)
			sc.ring.release(slot)
			sc.reserved--
		}
	}
}

// makeRoom evicts the oldest pieces until one more push fits in the
// window. Caller holds the server's mu.
func (sc *streamCache) makeRoom() {
	for len(sc.order) > 0 && len(sc.order)+sc.reserved >= sc.WindowSize {
		sc.evictOldest()
	}
}

// add caches a received piece unless it is already cached (then it
// reports false and the caller frees b). Caller holds the server's mu.
func (sc *streamCache) add(num int, c *cached) bool {
	if _, dup := sc.pieces[num]; dup {
		return false
	}
	for len(sc.order) >= sc.WindowSize {
		sc.evictOldest()
	}
	sc.pieces[num] = c
	sc.order = append(sc.order, num)
	sc.enqueue(streamNote{num: num, cached: true})
	return true
}

// buffer returns a buffer of n bytes, reused when possible. Caller holds
// the server's mu.
func (sc *streamCache) buffer(n int) []byte {
	for i := len(sc.free) - 1; i >= 0; i-- {
		if b := sc.free[i]; cap(b) >= n {
			sc.free = append(sc.free[:i], sc.free[i+1:]...)
			return b[:n]
		}
	}
	return make([]byte, n)
}

// evictOldest drops the oldest cached piece and queues its report. Caller
// holds the server's mu.
func (sc *streamCache) evictOldest() {
	old := sc.order[0]
	sc.order = sc.order[1:]
	c := sc.pieces[old]
	delete(sc.pieces, old)
	c.evicted = true
	sc.recycle(c)
	sc.enqueue(streamNote{num: old})
}

type streamNote struct {
	num    int
	cached bool
}

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
	sc := &streamCache{StreamTask: t, pieces: map[int]*cached{}, pending: map[int]reservation{}, wake: make(chan struct{}, 1),
		done: make(chan struct{})}
	if r.Header.Get(api.HeaderStreamRing) != "" {
		// Twice the window: evicted pieces still being sent keep their
		// slots. Without a ring the dfget pushes piece bodies.
		rg, err := newRing(2*wnd, int(size))
		if err != nil {
			s.log.Infof("stream %s: no shared ring, pieces come by HTTP: %v", name, err)
		} else {
			sc.ring = rg
			w.Header().Set(api.HeaderStreamRing, rg.path)
			w.Header().Set(api.HeaderStreamRingSlots, strconv.Itoa(len(rg.busy)))
		}
	}
	if pid, err := strconv.Atoi(r.Header.Get(api.HeaderDfgetPID)); err == nil && pid > 0 {
		sc.owner = procOf(pid)
	}
	s.mu.Lock()
	sc.node = s.nodeClient(api.NodeCredsFrom(r.Header))
	old := s.streams[name]
	s.streams[name] = sc
	if old != nil {
		old.shutRing()
	}
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
	go s.notifier(sc)
	text(w, http.StatusOK, "success")
}

func (s *Server) handleStreamPiece(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get(api.HeaderTaskFileName)
	num, err := strconv.Atoi(r.Header.Get(api.HeaderPieceNum))
	s.mu.Lock()
	sc := s.streams[name]
	s.mu.Unlock()
	if sc == nil || err != nil || num < 0 {
		text(w, http.StatusBadRequest, "unknown stream task or bad pieceNum")
		return
	}
	if r.Header.Get(api.HeaderStreamSlot) != "" {
		s.commitSlot(w, r, sc, num)
		return
	}
	if r.ContentLength < piece.WrapSize || r.ContentLength > int64(sc.PieceSize) {
		text(w, http.StatusBadRequest, "bad piece length")
		return
	}
	// Make room first: the buffer this push fills is part of the window.
	s.mu.Lock()
	sc.makeRoom()
	sc.reserved++
	b := sc.buffer(int(r.ContentLength))
	s.mu.Unlock()
	keep := false
	defer func() {
		s.mu.Lock()
		sc.reserved--
		if !keep && len(sc.free) < sc.WindowSize {
			sc.free = append(sc.free, b[:0])
		}
		s.mu.Unlock()
	}()
	if _, err := io.ReadFull(r.Body, b); err != nil {
		text(w, http.StatusBadRequest, "short piece body")
		return
	}
	if _, err := piece.Unwrap(b); err != nil {
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	if s.streams[name] != sc {
		s.mu.Unlock()
		text(w, http.StatusGone, "stream task closed")
		return
	}
	keep = sc.add(num, &cached{b: b, slot: -1})
	s.mu.Unlock()
	text(w, http.StatusOK, "success")
}

// handleStreamSlot reserves a ring slot for a piece (POST /stream/slot):
// room is made in the window as for a push, and the slot number is the
// answer. 503 means every slot is busy: push the body instead.
func (s *Server) handleStreamSlot(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get(api.HeaderTaskFileName)
	num, err := strconv.Atoi(r.Header.Get(api.HeaderPieceNum))
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.streams[name]
	if sc == nil || sc.ring == nil || err != nil || num < 0 {
		text(w, http.StatusBadRequest, "unknown stream task, no ring, or bad pieceNum")
		return
	}
	sc.expireReservations(s.slotTTL)
	sc.makeRoom()
	slot := sc.ring.take()
	if slot < 0 {
		text(w, http.StatusServiceUnavailable, "every ring slot is busy")
		return
	}
	sc.reserved++
	sc.pending[slot] = reservation{num: num, at: time.Now()}
	text(w, http.StatusOK, strconv.Itoa(slot))
}

// commitSlot caches the piece the dfget wrote into its reserved slot. A
// commit that fails its checks frees the slot, so a dfget that could not
// write the slot commits anyway and then pushes the body.
func (s *Server) commitSlot(w http.ResponseWriter, r *http.Request, sc *streamCache, num int) {
	slot, err1 := strconv.Atoi(r.Header.Get(api.HeaderStreamSlot))
	n, err2 := strconv.Atoi(r.Header.Get(api.HeaderPieceLength))
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := sc.pending[slot]
	if err1 != nil || !ok || res.num != num || sc.ring == nil {
		text(w, http.StatusBadRequest, "slot not reserved for this piece")
		return
	}
	delete(sc.pending, slot)
	sc.reserved--
	c := &cached{slot: slot}
	var err error
	switch {
	case err2 != nil || n < piece.WrapSize || n > sc.ring.size:
		err = fmt.Errorf("bad piece length %q", r.Header.Get(api.HeaderPieceLength))
	case s.streams[sc.TaskFileName] != sc:
		err = errors.New("stream task closed")
	default:
		c.b = sc.ring.slot(slot, n)
		_, err = piece.Unwrap(c.b)
	}
	if err != nil || !sc.add(num, c) {
		sc.ring.release(slot)
	}
	if err != nil {
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	text(w, http.StatusOK, "success")
}

// notifier reports cache changes to the supernode in order. Reports are
// best effort: a lost report only makes the supernode schedule a piece we
// then answer 404 for, which the fetching peer reports and retries.
func (s *Server) notifier(sc *streamCache) {
	defer close(sc.done)
	for {
		n, ok := sc.next()
		if !ok {
			return
		}
		if sc.SuperNode == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rg := piece.Range(n.num, sc.PieceSize, -1)
		if err := sc.node.StreamPiece(ctx, sc.SuperNode, sc.TaskID, sc.CID, rg, n.cached); err != nil {
			s.log.Debugf("stream piece report %s %d cached=%v: %v", sc.TaskFileName, n.num, n.cached, err)
		}
		cancel()
	}
}

// dropOrphanStreams closes the stream caches whose dfget process is gone.
func (s *Server) dropOrphanStreams() {
	var gone []string
	s.mu.Lock()
	for name, sc := range s.streams {
		if !sc.owner.alive() {
			gone = append(gone, name)
		}
	}
	s.mu.Unlock()
	for _, name := range gone {
		s.log.Infof("stream %s: its dfget is gone, dropping the cache", name)
		s.closeStream(name)
	}
}

// closeStream drops a stream cache, reporting its pieces as evicted.
func (s *Server) closeStream(name string) {
	s.mu.Lock()
	sc := s.streams[name]
	if sc != nil {
		delete(s.streams, name)
		for _, n := range sc.order {
			sc.enqueue(streamNote{num: n})
		}
		sc.order, sc.pieces, sc.free = nil, nil, nil
		sc.shutRing()
		sc.close()
	}
	s.mu.Unlock()
	if sc != nil {
		<-sc.done
	}
}

func (s *Server) serveStream(w http.ResponseWriter, sc *streamCache, pr pieceRequest) {
	s.mu.Lock()
	c, ok := sc.pieces[pr.num]
	if ok && pr.wrapped && int64(len(c.b)) <= pr.length+piece.WrapSize {
		c.refs++
		sc.sending++
	} else {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		text(w, http.StatusNotFound, "piece not in stream cache")
		return
	}
	defer func() {
		s.mu.Lock()
		c.refs--
		sc.sending--
		if c.evicted {
			sc.recycle(c)
		}
		if sc.shut {
			sc.shutRing()
		}
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(c.b)))
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(c.b)
}
