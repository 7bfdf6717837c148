// Package progress is the supernode's piece state store, in memory and
// behind one lock: which pieces the CDN has written, which each client has,
// is fetching or failed, who holds each piece, how many uploads each holder
// serves, error counts, blacklists and the sliding windows of streaming
// clients. It decides nothing: which piece and which holder is the
// scheduler's policy (supernode/mgr/scheduler), run under this lock through
// Assign and a Slot. Every change that can make a piece schedulable wakes
// the task's waiters, so /peer/task can long-poll instead of answering
// "wait" at once.
package progress

import (
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/bits-and-blooms/bitset"
)

// Status is a piece state reported for a client.
type Status int

// Piece states.
const (
	Running Status = iota
	Success
	Failed
	// SemiSuccess is v1's SEMISUC (result 503 on /peer/task): the client
	// has the piece in memory, not yet in the file its peer server reads.
	// It counts as had by that client but does not make it a holder; only
	// Success (/peer/piece/suc, sent once the piece is written) does.
	SemiSuccess
	// GivenBack is a failure that names no holder (no dstCid): from a
	// stream client, a piece its writer's window turned away before it
	// was fetched. It is available again and no one is charged for it;
	// from any other client it is a Failed.
	GivenBack
)

// DefaultWindow is the window of a streaming client that asked for <= 0.
const DefaultWindow = 8

// Errors callers map to protocol codes.
var (
	ErrUnknownTask   = errors.New("unknown task")
	ErrUnknownClient = errors.New("unknown client")
	ErrUnknownPiece  = errors.New("piece not written by the cdn")
)

// Limits are the scheduling limits: the store keeps the counts, the
// scheduler's policies enforce them.
type Limits struct {
	DownLimit  int // pieces running per client
	UpLimit    int // uploads per peer
	SuperLimit int // pieces served by the supernode per task
}

type taskState struct {
	cdn   *bitset.BitSet
	total int // -1 while unknown
	// holders of each piece, by piece (a slice, so counting is cheap),
	// with their peer state (so picking one needs no second lookup).
	holders []map[string]*peerState
	// held is len(holders[num]), by piece: the candidate scan reads it for
	// every piece of every call, and one contiguous array stays in cache
	// where a thousand maps' headers did not. Only addHolder and
	// dropHolders change holders, and they keep it.
	held     []int32
	inflight []int32 // clients fetching each piece right now, by piece
	// seeding counts, by piece, fetches by clients that will serve the
	// piece to others; seededAt is when the last of them started.
	seeding  []int32
	seededAt []time.Time
	super    int // pieces in flight from the supernode
	waiters  map[chan struct{}]struct{}
	failed   bool
	clients  map[string]struct{}
	finished bool
}

type clientState struct {
	taskID  string
	peerID  string
	success *bitset.BitSet
	running map[int]string // piece -> dst peer ID
	stream  bool
	wnd     int
	una     int
	seeds   bool // its peer serves others (not a CDN-pattern client)
}

type peerState struct {
	load       int
	clientErr  int
	serviceErr int
	down       time.Time
	cdnPattern bool
	black      map[string]int
}

// Manager is the in-memory progress store. It is safe for concurrent use.
type Manager struct {
	mu       sync.Mutex
	now      func() time.Time
	superPID string
	tasks    map[string]*taskState
	clients  map[string]*clientState // key: cid
	peers    map[string]*peerState
	// slot is the one Slot Assign hands to its picker, reused so that a
	// call allocates nothing per piece; mu guards it.
	slot Slot
}

// New returns an empty manager; superPID is the supernode's own peer ID.
func New(superPID string) *Manager {
	return &Manager{
		now:      time.Now,
		superPID: superPID,
		tasks:    map[string]*taskState{},
		clients:  map[string]*clientState{},
		peers:    map[string]*peerState{},
	}
}

// SuperPID is the supernode's peer ID.
func (m *Manager) SuperPID() string { return m.superPID }

// Wake-up budgets: a change wakes only as many long-polling clients as it
// can serve, so a swarm of waiters does not recompute on every report.
const (
	wakeAll    = -1
	wakePiece  = 8 // a new CDN piece
	wakeHolder = 2 // a new holder
	wakeSlot   = 1 // a freed upload slot
)

// notify wakes up to n waiters (all when n < 0).
func (t *taskState) notify(n int) {
	for ch := range t.waiters {
		if n == 0 {
			return
		}
		ch <- struct{}{} // buffered 1, sent once: never blocks
		delete(t.waiters, ch)
		n--
	}
}

// InitTask makes sure the task exists. It is the only call that creates
// one: the CDN's events, a long-poll's Waiter and InitClient about a task
// that is gone (dropped by GC while a fetch, a poll or a registration was
// under way) leave no entry behind that nothing would ever remove.
func (m *Manager) InitTask(taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tasks[taskID] == nil {
		m.tasks[taskID] = &taskState{
			cdn: bitset.New(0), total: -1,
			waiters: map[chan struct{}]struct{}{}, clients: map[string]struct{}{},
		}
	}
}

// ResetCDN forgets the CDN's pieces (a new CDN run starts).
func (m *Manager) ResetCDN(taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil {
		return
	}
	t.cdn.ClearAll()
	t.failed, t.finished, t.total = false, false, -1
	t.notify(wakeAll)
}

// SetCDNPiece marks piece num as written by the CDN (schedulable now).
func (m *Manager) SetCDNPiece(taskID string, num int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil || num < 0 {
		return
	}
	t.cdn.Set(uint(num))
	t.notify(wakePiece)
}

// FinishCDN records the CDN outcome and the final piece count.
func (m *Manager) FinishCDN(taskID string, total int, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil {
		return
	}
	t.finished = true
	t.failed = !ok
	if ok {
		t.total = total
	}
	t.notify(wakeAll)
}

// Waiter registers a one-shot wake-up for a change of the task that may make
// a piece schedulable; stop unregisters it. For a task that is gone the
// wake-up fires at once: the caller looks again and finds it gone.
func (m *Manager) Waiter(taskID string) (wake <-chan struct{}, stop func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan struct{}, 1)
	t := m.tasks[taskID]
	if t == nil {
		ch <- struct{}{}
		return ch, func() {}
	}
	t.waiters[ch] = struct{}{}
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(t.waiters, ch)
	}
}

// InitClient records a client (cid) of a task on peer peerID. With stream
// it is a streaming client with that window (0: the default), which starts
// at piece 0 even when it moved here with pieces written: those are offered
// to it too, so that it checks their digests against this copy. The task
// must exist (InitTask).
func (m *Manager) InitClient(taskID, cid, peerID string, cdnPattern bool, stream bool, window int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil {
		return fmt.Errorf("%w: %s", ErrUnknownTask, taskID)
	}
	if old := m.clients[cid]; old != nil {
		m.releaseRunning(old)
		// A cid has one state, for its latest task: the task it leaves no
		// longer lists it, or dropping that task would drop this state.
		if prev := m.tasks[old.taskID]; prev != nil && old.taskID != taskID {
			delete(prev.clients, cid)
		}
	}
	if stream && window <= 0 {
		window = DefaultWindow
	}
	m.clients[cid] = &clientState{
		taskID: taskID, peerID: peerID, success: bitset.New(0),
		running: map[int]string{}, stream: stream, wnd: window, seeds: !cdnPattern,
	}
	t.clients[cid] = struct{}{}
	p := m.peer(peerID)
	p.cdnPattern = cdnPattern
	p.down = time.Time{}
	return nil
}

func (m *Manager) peer(peerID string) *peerState {
	p := m.peers[peerID]
	if p == nil {
		p = &peerState{black: map[string]int{}}
		m.peers[peerID] = p
	}
	return p
}

// releaseRunning gives back the loads held by a client's running pieces.
func (m *Manager) releaseRunning(c *clientState) {
	for num := range c.running {
		m.stopRunning(c, num)
	}
}

// stopRunning ends piece num running for c: the source's load and the
// piece's in-flight count go back, and the freed slot wakes a waiter. It
// returns the source, if it was running.
func (m *Manager) stopRunning(c *clientState, num int) (string, bool) {
	dst, ok := m.unrun(c, num)
	if t := m.tasks[c.taskID]; ok && t != nil {
		t.notify(wakeSlot)
	}
	return dst, ok
}

// unrun is stopRunning without the wake-up.
func (m *Manager) unrun(c *clientState, num int) (string, bool) {
	dst, ok := c.running[num]
	if !ok {
		return "", false
	}
	delete(c.running, num)
	t := m.tasks[c.taskID]
	if t != nil && num < len(t.inflight) && t.inflight[num] > 0 {
		t.inflight[num]--
		if c.seeds && t.seeding[num] > 0 {
			t.seeding[num]--
		}
	}
	if dst == m.superPID {
		if t != nil && t.super > 0 {
			t.super--
		}
	} else if p := m.peers[dst]; p != nil && p.load > 0 {
		p.load--
	}
	return dst, true
}

// Update records that client cid finished piece num with status (Success,
// SemiSuccess, Failed or GivenBack). A piece already had stays so: a re-report only
// adds the holder a Success brings, as v1 does when /peer/piece/suc follows
// a 503. It returns the peer the piece was running from ("" if it was not).
// A piece the CDN has not written is refused whatever the status, unless a
// failure of a piece the client runs (the CDN may have started over since):
// a number out of the task is a client's mistake or a forgery. A stream's
// give-back returns "": no peer is to blame for it.
func (m *Manager) Update(taskID, cid string, num int, st Status) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[cid]
	if c == nil || c.taskID != taskID {
		return "", fmt.Errorf("%w: %s", ErrUnknownClient, cid)
	}
	t := m.tasks[taskID]
	if t == nil {
		return "", fmt.Errorf("%w: %s", ErrUnknownTask, taskID)
	}
	had := st == Success || st == SemiSuccess
	if _, run := c.running[num]; !t.written(num) && (had || !run) {
		return "", fmt.Errorf("%w: piece %d of task %s", ErrUnknownPiece, num, taskID)
	}
	dst, wasRunning := m.stopRunning(c, num)
	if st == GivenBack {
		if c.stream {
			// The holder was never asked for the piece: blaming it
			// would blacklist it for this client's host, count
			// against it for every client and probe it, all for a
			// reader slower than the window.
			return "", nil
		}
		st = Failed
	}
	// A stream's peer serves only what its stream cache holds, and the
	// cache says what that is (AddHolder, RemoveHolder). Its success
	// report does not make it a holder: a stream without a cache (its
	// peer server could not open one) or whose push failed was offered
	// for pieces it could never serve, each fetch a 404, and a report
	// arriving after the cache's eviction note would keep the piece
	// offered for good.
	if st == Success && !c.stream && t.addHolder(num, c.peerID, m.peer(c.peerID)) {
		t.notify(wakeHolder)
	}
	switch {
	case had:
		if c.success.Test(uint(num)) {
			return dst, nil
		}
		c.success.Set(uint(num))
		if c.stream {
			c.una = int(nextClear(c.success, uint(c.una)))
		}
		if wasRunning && dst != m.superPID {
			if p := m.peers[c.peerID]; p != nil {
				p.clientErr = 0
			}
			if p := m.peers[dst]; p != nil {
				p.serviceErr = 0
			}
		}
	case st == Failed:
		if wasRunning && dst != m.superPID {
			src := m.peer(c.peerID)
			src.clientErr++
			src.black[dst]++
			if p := m.peers[dst]; p != nil {
				p.serviceErr++
			}
		}
	}
	return dst, nil
}

// written reports whether the CDN wrote piece num: the pieces of the task
// as far as they are known, which bound every per-piece state.
func (t *taskState) written(num int) bool {
	return num >= 0 && t.cdn.Test(uint(num))
}

func nextClear(b *bitset.BitSet, from uint) uint {
	for b.Test(from) {
		from++
	}
	return from
}

// AddHolder makes the peer of client cid a holder of piece num (a stream
// cache announced it); a piece the CDN has not written is refused.
func (m *Manager) AddHolder(taskID, cid string, num int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[cid]
	if c == nil || c.taskID != taskID {
		return fmt.Errorf("%w: %s", ErrUnknownClient, cid)
	}
	t := m.tasks[taskID]
	if t == nil {
		return fmt.Errorf("%w: %s", ErrUnknownTask, taskID)
	}
	if !t.written(num) {
		return fmt.Errorf("%w: piece %d of task %s", ErrUnknownPiece, num, taskID)
	}
	if t.addHolder(num, c.peerID, m.peer(c.peerID)) {
		t.notify(wakeHolder)
	}
	return nil
}

// addHolder makes peer pid (state p) a holder of piece num; it reports
// whether pid was not one already.
func (t *taskState) addHolder(num int, pid string, p *peerState) bool {
	if num >= len(t.holders) {
		grow := num + 1 - len(t.holders)
		t.holders = append(t.holders, make([]map[string]*peerState, grow)...)
		t.held = append(t.held, make([]int32, grow)...)
	}
	h := t.holders[num]
	if h == nil {
		h = map[string]*peerState{}
		t.holders[num] = h
	}
	if old, ok := h[pid]; ok && old == p {
		return false
	}
	h[pid] = p
	t.held[num] = int32(len(h))
	return true
}

// dropHolders removes the peers pids as holders of piece num.
func (t *taskState) dropHolders(num int, pids ...string) {
	h := t.holdersOf(num)
	if h == nil {
		return
	}
	for _, pid := range pids {
		delete(h, pid)
	}
	t.held[num] = int32(len(h))
}

// holdersOf is the holders of piece num (nil if none).
func (t *taskState) holdersOf(num int) map[string]*peerState {
	if num < 0 || num >= len(t.holders) {
		return nil
	}
	return t.holders[num]
}

// RemoveHolder drops the peer of client cid as a holder of piece num.
func (m *Manager) RemoveHolder(taskID, cid string, num int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[cid]
	if c == nil || c.taskID != taskID {
		return fmt.Errorf("%w: %s", ErrUnknownClient, cid)
	}
	if t := m.tasks[taskID]; t != nil {
		t.dropHolders(num, c.peerID)
	}
	return nil
}

// Holders lists the peers (not the supernode) holding piece num.
func (m *Manager) Holders(taskID string, num int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil {
		return nil
	}
	out := make([]string, 0, len(t.holdersOf(num)))
	for p := range t.holdersOf(num) {
		out = append(out, p)
	}
	return out
}

// Candidate is a piece a client may fetch and how many peers hold it or
// are fetching it.
type Candidate struct {
	Num     int
	Holders int // holders plus clients fetching it
	Held    int // holders only
}

// View is what the scheduler needs about a client, taken atomically.
type View struct {
	Candidates   []Candidate
	Running      []int
	ClientErrors int
	Stream       bool
	CDNFailed    bool
	// Done: the CDN finished successfully and the client has every piece.
	Done bool
	// Super is the number of pieces of the task in flight from the supernode.
	Super int
}

// ClientView computes the pieces client cid can fetch now: written by the
// CDN, not had, not running, inside the window for a streaming client. The
// candidates are appended to buf[:0] (pass the last View's Candidates back
// to reuse it: this runs for every /peer/task under the manager's lock, so
// it must neither allocate nor hash per piece). It costs O(pieces): holders
// are only counted here and picked (through Assign) by the scheduler. A client already running
// maxRunning pieces (when > 0) cannot be given more, so the scan stops at
// the first candidate: whether there is one is all the caller needs.
func (m *Manager) ClientView(taskID, cid string, maxRunning int, buf []Candidate) (View, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[cid]
	if c == nil || c.taskID != taskID {
		return View{}, fmt.Errorf("%w: %s", ErrUnknownClient, cid)
	}
	t := m.tasks[taskID]
	if t == nil {
		return View{}, fmt.Errorf("%w: %s", ErrUnknownTask, taskID)
	}
	v := View{Stream: c.stream, CDNFailed: t.failed, Candidates: buf[:0], Super: t.super}
	// A stream that moved here from another supernode started at its una:
	// it is done when the window has passed the last piece.
	v.Done = t.finished && !t.failed && t.total > 0 &&
		(int(c.success.Count()) >= t.total || (c.stream && c.una >= t.total))
	if src := m.peers[c.peerID]; src != nil {
		v.ClientErrors = src.clientErr
	}
	for n := range c.running {
		v.Running = append(v.Running, n)
	}
	full := maxRunning > 0 && len(v.Running) >= maxRunning
	if c.stream {
		for i, ok := t.cdn.NextSet(uint(c.una)); ok && i < uint(c.una+c.wnd); i, ok = t.cdn.NextSet(i + 1) {
			if !c.success.Test(i) && t.appendCandidate(&v, int(i)) && full {
				break
			}
		}
		return v, nil
	}
	// Word by word: the pieces written and not had are cdn &^ success.
	have := c.success.Words()
	for w, word := range t.cdn.Words() {
		if w < len(have) {
			word &^= have[w]
		}
		for ; word != 0; word &= word - 1 {
			if t.appendCandidate(&v, w*64+bits.TrailingZeros64(word)) && full {
				return v, nil
			}
		}
	}
	return v, nil
}

// appendCandidate adds piece i to v's candidates unless the client runs it;
// it reports whether it did.
func (t *taskState) appendCandidate(v *View, i int) bool {
	if slices.Contains(v.Running, i) { // a handful: cheaper than the map
		return false
	}
	// Pieces others are fetching count as held: they soon will be, so
	// clients starting together spread over different pieces instead of
	// all taking piece 0 from the supernode. (The client itself is not
	// among the holders or fetchers of a piece it lacks and is not
	// running.)
	held, n := 0, 0
	if i < len(t.held) {
		held = int(t.held[i])
	}
	if i < len(t.inflight) {
		n = int(t.inflight[i])
	}
	v.Candidates = append(v.Candidates, Candidate{Num: i, Holders: held + n, Held: held})
	return true
}

// Assigned is a piece marked running for a client and its source peer.
type Assigned struct {
	Num int
	Dst string
}

// HolderPicker chooses where a client fetches a piece from: a holder, the
// supernode, or nowhere yet. It runs under the store's lock, once for each
// piece offered, and must not call back into the store.
type HolderPicker interface {
	Pick(s *Slot) (h Holder, ok bool)
}

// Assign marks pieces running for client cid, trying nums in the given
// order until the client runs downLimit pieces; pick chooses the source of
// each. One lock for the whole batch keeps a busy swarm from queueing on
// it.
func (m *Manager) Assign(taskID, cid string, nums []int, downLimit int, pick HolderPicker) []Assigned {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[cid]
	t := m.tasks[taskID]
	if c == nil || t == nil || c.taskID != taskID {
		return nil
	}
	s := &m.slot
	*s = Slot{m: m, t: t, c: c, src: m.peers[c.peerID]}
	defer func() { *s = Slot{} }()
	var out []Assigned
	for _, num := range nums {
		if len(c.running) >= downLimit {
			break
		}
		if _, run := c.running[num]; run || c.success.Test(uint(num)) {
			continue
		}
		s.Num = num
		if h, ok := pick.Pick(s); ok {
			m.start(t, c, num, h)
			out = append(out, Assigned{Num: num, Dst: h.ID})
		}
	}
	return out
}

// start marks piece num running for c from h, which takes the load.
func (m *Manager) start(t *taskState, c *clientState, num int, h Holder) {
	if h.super {
		t.super++
	} else {
		h.p.load++
	}
	c.running[num] = h.ID
	if num >= len(t.inflight) {
		grow := num + 1 - len(t.inflight)
		t.inflight = append(t.inflight, make([]int32, grow)...)
		t.seeding = append(t.seeding, make([]int32, grow)...)
		t.seededAt = append(t.seededAt, make([]time.Time, grow)...)
	}
	t.inflight[num]++
	if c.seeds {
		t.seeding[num]++
		t.seededAt[num] = m.now()
	}
}

// Unassign undoes an Assign whose answer could not be sent. It wakes no
// one: the slot was taken only for the moment of that call, so nothing a
// waiter could use has changed; and the caller's own waiter is registered
// before it schedules, so a wake-up would send it straight back to the
// piece it could not offer, round and round until its long-poll ends.
func (m *Manager) Unassign(taskID, cid string, num int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clients[cid]; c != nil && c.taskID == taskID {
		m.unrun(c, num)
	}
}

// DropHolder removes peer peerID as a holder of every piece of the task
// (its server cannot serve the task any more: the peer or its client of
// the task is gone). Its other tasks keep it. Dropping one can make the
// supernode the source of a piece, so it wakes waiters as a new holder
// does.
func (m *Manager) DropHolder(taskID, peerID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil {
		return
	}
	dropped := false
	for num, h := range t.holders {
		if _, ok := h[peerID]; ok {
			t.dropHolders(num, peerID)
			dropped = true
		}
	}
	if dropped {
		t.notify(wakeHolder)
	}
}

// PeerDown marks a peer offline: it is no longer offered as a holder, its
// clients' running pieces are released and their windows dropped.
//
// A peer without state has nothing to mark: it has no client here, or was
// deleted (a probe that overlapped its GC or DELETE /api/v1/peers/{id}).
// State made for it now would be kept forever, as the peer GC walks the
// peer records, and there is none.
func (m *Manager) PeerDown(peerID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[peerID]
	if p == nil {
		return
	}
	if p.down.IsZero() {
		p.down = time.Now()
	}
	for _, c := range m.clients {
		if c.peerID == peerID {
			m.releaseRunning(c)
			c.stream, c.wnd, c.una = false, 0, 0
		}
	}
}

// DownSince reports when a peer went down (zero if up or unknown).
func (m *Manager) DownSince(peerID string) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.peers[peerID]; p != nil {
		return p.down
	}
	return time.Time{}
}

// HasPeer reports whether the peer has progress state.
func (m *Manager) HasPeer(peerID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.peers[peerID]
	return ok
}

// PeerIDs lists the peers that have progress state.
func (m *Manager) PeerIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Keys(m.peers))
}

// DeleteClient forgets client cid of task taskID, releasing its loads. A
// cid that registered for another task since is that task's client, and
// is kept.
func (m *Manager) DeleteClient(taskID, cid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[cid]
	if c == nil || c.taskID != taskID {
		return
	}
	m.releaseRunning(c)
	if t := m.tasks[c.taskID]; t != nil {
		delete(t.clients, cid)
	}
	delete(m.clients, cid)
}

// DeletePeer forgets a peer and removes it as a holder everywhere.
func (m *Manager) DeletePeer(peerID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.peers, peerID)
	for _, t := range m.tasks {
		for num := range t.holders {
			t.dropHolders(num, peerID)
		}
	}
	for _, p := range m.peers {
		delete(p.black, peerID)
	}
}

// DeleteTask forgets a task and its clients.
func (m *Manager) DeleteTask(taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil {
		return
	}
	for cid := range t.clients {
		// Only the task's own: a cid that registered for another task
		// since belongs to that one.
		if c := m.clients[cid]; c != nil && c.taskID == taskID {
			m.releaseRunning(c)
			delete(m.clients, cid)
		}
	}
	t.notify(wakeAll)
	delete(m.tasks, taskID)
}

// Window returns a streaming client's window (una, wnd); ok is false for a
// non-streaming or unknown client.
func (m *Manager) Window(cid string) (una, wnd int, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[cid]
	if c == nil || !c.stream {
		return 0, 0, false
	}
	return c.una, c.wnd, true
}

// Alone reports whether no other client of the task lacks a piece: then
// no one would fetch a piece from client cid, and a stream need not keep
// its pieces for others. While the task's length is unknown every other
// client counts as lacking, as does one that started mid-file.
func (m *Manager) Alone(taskID, cid string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskID]
	if t == nil {
		return false
	}
	for other := range t.clients {
		if other == cid {
			continue
		}
		if c := m.clients[other]; c != nil && (t.total < 0 || int(c.success.Count()) < t.total) {
			return false
		}
	}
	return true
}

// Loads returns the upload load of a peer and the supernode load of a task
// (for tests and metrics).
func (m *Manager) Loads(taskID, peerID string) (peer, super int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.peers[peerID]; p != nil {
		peer = p.load
	}
	if t := m.tasks[taskID]; t != nil {
		super = t.super
	}
	return peer, super
}

// EndStream drops a streaming client's window (its download ended); the
// client stays a holder of what it reported until it evicts it.
func (m *Manager) EndStream(cid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clients[cid]; c != nil {
		c.stream, c.wnd, c.una = false, 0, 0
	}
}
