package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// Errors of the stream cache that the handlers answer with a status of
// their own; every other error is a bad request.
var (
	// errStreamClosed: the cache was dropped or replaced while a push was
	// on its way.
	errStreamClosed = errors.New("stream task closed")
	// errNoRing: no ring to reserve a slot in (never asked for, or gone).
	errNoRing = errors.New("unknown stream task, no ring, or bad pieceNum")
	// errRingFull: every slot is busy; the dfget pushes the body instead.
	errRingFull = errors.New("every ring slot is busy")
	// errNotCached: the piece asked for is not in the cache (or does not
	// fit the range, or the cache is shut).
	errNotCached = errors.New("piece not in stream cache")
	// errSendsBusy: as many piece buffers as the cache lets responses
	// hold are held; the fetching peer fails the piece and gets it
	// elsewhere.
	errSendsBusy = errors.New("too many stream pieces being sent")
	// errPeerBusy: the requesting peer's address is already being sent
	// its share of the pieces; answered as errSendsBusy.
	errPeerBusy = fmt.Errorf("%w to this peer", errSendsBusy)
)

// streamCache holds the last window pieces of a streaming dfget so other
// peers can fetch them. It evicts FIFO and tells the supernode about every
// piece it caches and evicts, in order, through one notifier goroutine.
//
// It has its own lock: the peer server's lock only says which cache serves
// which task file, so pushes, commits and sends of one stream never wait
// for another stream or for the server's file tasks.
type streamCache struct {
	api.StreamTask
	// node reaches SuperNode with the streaming dfget's credentials.
	node *api.Client
	// owner is the streaming dfget's process, if it said which: a dfget
	// killed mid-stream never drops its cache, so the server does.
	owner proc

	mu     sync.Mutex
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
	// when the cache is dropped or replaced: it takes no more pieces, and
	// the ring is unmapped once no response sends from it.
	sending int
	shut    bool
	// held counts the pieces (cached or evicted) that responses are
	// sending, at most maxHeld: an evicted piece being sent keeps its
	// buffer, so without the bound peers that ask for every piece and
	// never read would keep all a stream's pieces in memory until their
	// write deadlines, not just the window.
	held int
	// peers counts the sends of each requesting peer address, at most
	// peerShare each: without it one peer that asks for piece after piece
	// and never reads takes all maxHeld places until its write deadlines,
	// and every other peer is answered 503 meanwhile.
	peers map[string]int

	notes *noteQueue
}

// newStreamCache returns the cache of a stream task; rg may be nil (the
// dfget pushes piece bodies).
func newStreamCache(t api.StreamTask, rg *ring, node *api.Client, owner proc) *streamCache {
	return &streamCache{StreamTask: t, node: node, owner: owner, pieces: map[int]*cached{}, ring: rg,
		pending: map[int]reservation{}, peers: map[string]int{}, notes: newNoteQueue()}
}

// cached is one piece in the cache; refs counts responses still sending it,
// so its buffer is recycled only when none is.
type cached struct {
	b       []byte
	slot    int // ring slot holding b, or -1 for a heap buffer
	refs    int
	evicted bool
}

// reservation is a ring slot reserved for piece num at a time.
type reservation struct {
	num int
	at  time.Time
}

// push receives a piece body of n bytes (checked by the caller against the
// piece size) into a buffer of the window and caches it once it unwraps.
func (sc *streamCache) push(num int, body io.Reader, n int) error {
	// Make room first: the buffer this push fills is part of the window.
	sc.mu.Lock()
	sc.makeRoom()
	sc.reserved++
	b := sc.buffer(n)
	sc.mu.Unlock()
	keep := false
	defer func() {
		sc.mu.Lock()
		sc.reserved--
		if !keep && len(sc.free) < sc.WindowSize {
			sc.free = append(sc.free, b[:0])
		}
		sc.mu.Unlock()
	}()
	if _, err := io.ReadFull(body, b); err != nil {
		return errors.New("short piece body")
	}
	if _, err := piece.Unwrap(b); err != nil {
		return err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.shut {
		return errStreamClosed
	}
	keep = sc.add(num, &cached{b: b, slot: -1})
	return nil
}

// reserveSlot reserves a ring slot for piece num, making room in the
// window as a push does. Reservations older than ttl are freed first: a
// dfget writes a reserved slot and commits it within milliseconds, so such
// a reservation was lost (its commit request failed) and would otherwise
// hold a slot and a place in the window until the stream ends.
func (sc *streamCache) reserveSlot(num int, ttl time.Duration) (int, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.ring == nil || sc.shut {
		return 0, errNoRing
	}
	for slot, r := range sc.pending {
		if time.Since(r.at) > ttl {
			delete(sc.pending, slot)
			sc.ring.release(slot)
			sc.reserved--
		}
	}
	sc.makeRoom()
	slot := sc.ring.take()
	if slot < 0 {
		return 0, errRingFull
	}
	sc.reserved++
	sc.pending[slot] = reservation{num: num, at: time.Now()}
	return slot, nil
}

// commitSlot caches the piece the dfget wrote into its reserved slot; the
// length is the dfget's header. A commit that fails its checks frees the
// slot, so a dfget that could not write the slot commits anyway and then
// pushes the body.
func (sc *streamCache) commitSlot(num, slot int, length string) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	res, ok := sc.pending[slot]
	if !ok || res.num != num || sc.ring == nil {
		return errors.New("slot not reserved for this piece")
	}
	delete(sc.pending, slot)
	sc.reserved--
	c := &cached{slot: slot}
	n, err := strconv.Atoi(length)
	switch {
	case err != nil || n < piece.WrapSize || n > sc.ring.size:
		err = fmt.Errorf("bad piece length %q", length)
	case sc.shut:
		// Not errStreamClosed: a refused commit is a bad request (400),
		// as every commit that fails its checks.
		err = errors.New("stream task closed")
	default:
		c.b = sc.ring.slot(slot, n)
		_, err = piece.Unwrap(c.b)
	}
	if err != nil || !sc.add(num, c) {
		sc.ring.release(slot)
	}
	return err
}

// send hands cached piece num to write if it is at most maxLen bytes, and
// keeps its buffer (and the ring) from reuse until write returns. It
// fails with errNotCached when the piece is not cached or does not fit,
// and when the cache is shut: a request that found the cache before it
// was replaced must not read a ring that may be unmapped. It fails with
// errPeerBusy when peer (the requester's address) already has peerShare
// sends, and with errSendsBusy when sending the piece would hold one
// buffer more than maxHeld; another send of a piece already being sent
// shares its buffer and is let through that bound.
func (sc *streamCache) send(num int, maxLen int64, peer string, write func([]byte)) error {
	sc.mu.Lock()
	c, ok := sc.pieces[num]
	if !ok || sc.shut || int64(len(c.b)) > maxLen {
		sc.mu.Unlock()
		return errNotCached
	}
	if sc.peers[peer] >= sc.peerShare() {
		sc.mu.Unlock()
		return errPeerBusy
	}
	if c.refs == 0 {
		if sc.held >= sc.maxHeld() {
			sc.mu.Unlock()
			return errSendsBusy
		}
		sc.held++
	}
	c.refs++
	sc.sending++
	sc.peers[peer]++
	sc.mu.Unlock()
	defer func() {
		sc.mu.Lock()
		c.refs--
		sc.sending--
		if sc.peers[peer]--; sc.peers[peer] == 0 {
			delete(sc.peers, peer)
		}
		if c.refs == 0 {
			sc.held--
			if c.evicted {
				sc.recycle(c)
			}
		}
		if sc.shut {
			sc.shutRing()
		}
		sc.mu.Unlock()
	}()
	write(c.b)
	return nil
}

// maxHeld is how many pieces responses may be sending at once: every
// piece of the window, and as many evicted ones again. Whatever the peers
// do, the cache's buffers are then at most four windows: the window, up to
// two of evicted pieces still being sent, and the free list.
func (sc *streamCache) maxHeld() int { return 2 * sc.WindowSize }

// minPeerShare is the fewest sends one peer address may have at once: a
// dfget, ours or a Dragonfly 1.x one, fetches up to --clientqueue (6 by
// default) pieces at once, and a supernode hands one client at most
// --down-limit (4 by default) running pieces, all of which may come from
// this cache.
const minPeerShare = 6

// peerShare is how many pieces one peer address may be sent at once: a
// quarter of maxHeld, so that a peer that never reads leaves the rest to
// the others, and a bigger window serves several dfgets behind one
// address (one host's, a NAT's) at full speed; never fewer than one
// dfget fetches at once. Below a window of 4 that is every place: such a
// cache has too few places to share.
func (sc *streamCache) peerShare() int { return max(minPeerShare, sc.maxHeld()/4) }

// replaced shuts a cache that a new registration of its task file took
// over; its pieces are not reported evicted, the new cache owns the task.
func (sc *streamCache) replaced() {
	sc.mu.Lock()
	// The ring slots the pieces point into go with the ring.
	sc.order, sc.pieces, sc.free = nil, nil, nil
	sc.shutRing()
	sc.mu.Unlock()
	sc.notes.close()
}

// drop shuts the cache, reporting its pieces as evicted, and waits until
// the notifier has sent every report, or dropped those it could not send
// within the queue's grace.
func (sc *streamCache) drop() {
	sc.mu.Lock()
	for _, n := range sc.order {
		sc.notes.push(streamNote{num: n})
	}
	sc.order, sc.pieces, sc.free = nil, nil, nil
	sc.shutRing()
	sc.mu.Unlock()
	sc.notes.close()
	<-sc.notes.done
}

// notify reports cache changes to the supernode in order until the cache
// is shut. Reports are best effort: a lost report only makes the supernode
// schedule a piece we then answer 404 for, which the fetching peer reports
// and retries. So once the queue's grace after the shut is over, what is
// left is dropped rather than sent, each waiting for a supernode that may
// not answer.
func (sc *streamCache) notify(log logrus.FieldLogger) {
	defer close(sc.notes.done)
	defer sc.notes.cancel()
	for {
		n, ok := sc.notes.next()
		if !ok {
			return
		}
		if sc.SuperNode == "" {
			continue
		}
		if sc.notes.ctx.Err() != nil {
			left := 1 + sc.notes.discard()
			log.Warnf("stream %s: %d piece reports to %s dropped, not sent within %v of the cache's end",
				sc.TaskFileName, left, sc.SuperNode, sc.notes.grace)
			return
		}
		ctx, cancel := context.WithTimeout(sc.notes.ctx, 5*time.Second)
		rg := piece.Range(n.num, sc.PieceSize, -1)
		if err := sc.node.StreamPiece(ctx, sc.SuperNode, sc.TaskID, sc.CID, rg, n.cached); err != nil {
			log.Debugf("stream piece report %s %d cached=%v: %v", sc.TaskFileName, n.num, n.cached, err)
		}
		cancel()
	}
}

// recycle returns an evicted piece's buffer to the free list, or its ring
// slot to the ring. Caller holds sc.mu.
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

// shutRing marks the cache shut and unmaps its ring unless a response is
// still sending from it (send then does). Caller holds sc.mu.
func (sc *streamCache) shutRing() {
	sc.shut = true
	if sc.sending == 0 && sc.ring != nil {
		sc.ring.close()
		sc.ring = nil
	}
}

// makeRoom evicts the oldest pieces until one more push fits in the
// window. Caller holds sc.mu.
func (sc *streamCache) makeRoom() {
	for len(sc.order) > 0 && len(sc.order)+sc.reserved >= sc.WindowSize {
		sc.evictOldest()
	}
}

// add caches a received piece unless it is already cached (then it
// reports false and the caller frees b). Caller holds sc.mu.
func (sc *streamCache) add(num int, c *cached) bool {
	if _, dup := sc.pieces[num]; dup {
		return false
	}
	for len(sc.order) >= sc.WindowSize {
		sc.evictOldest()
	}
	sc.pieces[num] = c
	sc.order = append(sc.order, num)
	sc.notes.push(streamNote{num: num, cached: true})
	return true
}

// buffer returns a buffer of n bytes, reused when possible. Caller holds
// sc.mu.
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
// holds sc.mu.
func (sc *streamCache) evictOldest() {
	old := sc.order[0]
	sc.order = sc.order[1:]
	c := sc.pieces[old]
	delete(sc.pieces, old)
	c.evicted = true
	sc.recycle(c)
	sc.notes.push(streamNote{num: old})
}

// streamNote is one report to the supernode: piece num is now cached, or
// (cached false) no longer.
type streamNote struct {
	num    int
	cached bool
}

// noteQueue is an unbounded queue so a slow supernode never blocks the
// streaming dfget's pushes; it holds at most two notes per piece. Its lock
// is taken inside the cache's, never around it.
type noteQueue struct {
	mu     sync.Mutex
	notes  []streamNote
	closed bool
	wake   chan struct{}
	done   chan struct{} // closed when the notifier has sent everything
	// ctx bounds the notifier's calls. It ends grace after the queue is
	// closed: a drop waits for the last reports, and with one 5 s call
	// per note to a silent supernode a whole window (up to 1024 pieces)
	// would take hours.
	ctx    context.Context
	cancel context.CancelFunc
	grace  time.Duration
}

// drainGrace is how long a closed queue's notes may take to send, all
// together.
const drainGrace = 10 * time.Second

func newNoteQueue() *noteQueue {
	ctx, cancel := context.WithCancel(context.Background())
	return &noteQueue{wake: make(chan struct{}, 1), done: make(chan struct{}), ctx: ctx, cancel: cancel,
		grace: drainGrace}
}

// push queues n. An eviction whose piece's "cached" note is still queued
// cancels that note instead: the supernode never hears of a piece that
// is already gone. Sent, the two notes would cost two calls and leave a
// moment in which the supernode offers the piece from a cache without it
// (the fetch answered 404).
func (q *noteQueue) push(n streamNote) {
	q.mu.Lock()
	if !n.cached {
		for i, queued := range q.notes {
			if queued.num == n.num && queued.cached {
				q.notes = append(q.notes[:i], q.notes[i+1:]...)
				q.mu.Unlock()
				return
			}
		}
	}
	q.notes = append(q.notes, n)
	q.mu.Unlock()
	q.signal()
}

// close ends the queue: the notifier sends what is queued, within grace.
func (q *noteQueue) close() {
	q.mu.Lock()
	if !q.closed {
		time.AfterFunc(q.grace, q.cancel)
	}
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// discard drops the queued notes and says how many there were.
func (q *noteQueue) discard() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.notes)
	q.notes = nil
	return n
}

func (q *noteQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next blocks until a note is queued or the queue is closed and drained.
func (q *noteQueue) next() (streamNote, bool) {
	for {
		q.mu.Lock()
		if len(q.notes) > 0 {
			n := q.notes[0]
			q.notes = q.notes[1:]
			q.mu.Unlock()
			return n, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return streamNote{}, false
		}
		<-q.wake
	}
}
