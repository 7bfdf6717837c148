package progress

import "time"

// Holder is a source of a piece as a HolderPicker sees it: a peer holding
// the piece, or the supernode.
type Holder struct {
	ID            string
	Load          int // uploads it serves now (for the supernode: pieces of this task)
	ServiceErrors int
	Down          bool // its server went away
	CDNPattern    bool // it does not serve others
	Blacklisted   bool // the asking client failed on it before
	super         bool
	p             *peerState
}

// Slot is one piece offered to a client, as a HolderPicker sees it under
// the store's lock.
type Slot struct {
	Num int
	m   *Manager
	t   *taskState
	c   *clientState
	src *peerState // the client's own peer
}

// Holders yields the peers holding the piece, other than the client's own,
// starting at a random one (map order): a picker that stops early sees a
// fair sample of a popular piece's holders.
func (s *Slot) Holders(yield func(Holder) bool) {
	for pid, p := range s.t.holdersOf(s.Num) {
		if p == s.src {
			continue
		}
		h := Holder{ID: pid, Load: p.load, ServiceErrors: p.serviceErr, Down: !p.down.IsZero(), CDNPattern: p.cdnPattern, p: p}
		h.Blacklisted = s.src != nil && len(s.src.black) > 0 && s.src.black[pid] > 0
		if !yield(h) {
			return
		}
	}
}

// Drop removes peers as holders of the piece for good (down, or failed
// too often).
func (s *Slot) Drop(pids ...string) {
	s.t.dropHolders(s.Num, pids...)
}

// Supernode is the supernode as a source of the piece; ok is false when the
// CDN has not written it.
func (s *Slot) Supernode() (h Holder, ok bool) {
	return Holder{ID: s.m.superPID, Load: s.t.super, super: true}, s.t.cdn.Test(uint(s.Num))
}

// seedFor is how long a fetch by a serving peer keeps the supernode from
// sending the same piece again; past it the fetcher may be stuck or gone.
const seedFor = 10 * time.Second

// SeededRecently reports whether a client that serves others (never this
// one: it does not run the piece) started fetching the piece less than
// seedFor ago and is still at it.
func (s *Slot) SeededRecently() bool {
	t, num := s.t, s.Num
	if num >= len(t.seeding) {
		return false
	}
	return t.seeding[num] > 0 && s.m.now().Sub(t.seededAt[num]) < seedFor
}
