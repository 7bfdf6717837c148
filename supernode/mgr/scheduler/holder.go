package scheduler

import "github.com/damselfly-p2p/damselfly/supernode/mgr/progress"

// holderSample bounds the holders of one piece the picker looks at.
const holderSample = 16

// holderPicker is the holder policy: the least loaded usable peer holding
// the piece or, failing that, the supernode. A holder is usable when it is
// up, under the upload limit, not a CDN-pattern peer and not blacklisted
// by this client; holders that are down or failed eliminationLimit times
// are dropped for good. Without peers (a client that keeps failing) the
// supernode serves every piece.
type holderPicker struct {
	lim              progress.Limits
	eliminationLimit int
	peers            bool
}

// NewHolderPicker returns the holder policy for the given limits; without
// peers it picks the supernode only.
func NewHolderPicker(lim progress.Limits, eliminationLimit int, peers bool) progress.HolderPicker {
	return &holderPicker{lim: lim, eliminationLimit: eliminationLimit, peers: peers}
}

// Pick implements progress.HolderPicker.
func (hp *holderPicker) Pick(s *progress.Slot) (progress.Holder, bool) {
	best, found, busy := progress.Holder{}, false, false
	if hp.peers {
		best, found, busy = hp.bestPeer(s)
	}
	switch {
	case found:
		return best, true
	case hp.peers && (busy || s.SeededRecently()):
		// Super-seeding: a piece a usable peer has, or a serving peer is
		// fetching right now, is not sent again by the supernode; the
		// client waits for a peer copy. The supernode's uplink then carries
		// each piece about once instead of once per client.
		return progress.Holder{}, false
	}
	if sup, ok := s.Supernode(); ok && sup.Load < hp.lim.SuperLimit {
		return sup, true
	}
	return progress.Holder{}, false
}

// bestPeer is the least loaded usable holder of the slot's piece; busy
// reports a usable holder at its upload limit.
func (hp *holderPicker) bestPeer(s *progress.Slot) (best progress.Holder, found, busy bool) {
	// Holders start at a random one; looking at a bounded sample of a
	// popular piece's holders keeps a big swarm's calls cheap and still
	// finds an idle or lightly loaded one.
	seen := 0
	var dropped []string // down or eliminated: dropped for good
	for h := range s.Holders {
		if seen++; seen > holderSample {
			break
		}
		if h.Down || h.ServiceErrors >= hp.eliminationLimit {
			dropped = append(dropped, h.ID)
			continue
		}
		if h.CDNPattern || h.Blacklisted {
			continue
		}
		if h.Load >= hp.lim.UpLimit {
			busy = true
			continue
		}
		if !found || h.Load < best.Load {
			best, found = h, true
			if h.Load == 0 {
				break // cannot do better; keeps this O(1) in a big swarm
			}
		}
	}
	if len(dropped) > 0 {
		s.Drop(dropped...)
	}
	return best, found, busy
}
