// Package ring orders the members of a cluster for a key by weighted
// rendezvous (highest-random-weight) hashing. Every process that knows the
// same members computes the same order for a key, without talking to the
// others, so the peers of one task meet on the same supernode (the task's
// home), and all move to the same next member when the home fails.
//
// The order is a function of the key and each member's own ID and weight
// only: it does not depend on the order the members are listed in, a member
// of weight 2 comes first for about twice as many keys as one of weight 1,
// and adding or removing a member moves only the keys whose first member it
// is (or becomes).
package ring

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
)

// Member is one member of a cluster: an ID every process spells the same
// way (a supernode's "ip:port") and a weight of at least 1.
type Member struct {
	ID     string
	Weight int
}

// Score is member m's rendezvous score for key: -w/ln(u), with u in (0,1)
// drawn from a hash of key and m.ID. The member with the highest score is
// the key's home; with that transform, the chance to be first is in
// proportion to the weight.
func Score(key string, m Member) float64 {
	w := max(m.Weight, 1)
	return -float64(w) / math.Log(unit(key, m.ID))
}

// Order returns the indices of members in descending score for key: the
// first is the key's home, the rest the order to fail over in. Ties, which
// need equal hashes, fall back to the ID so the order is still total.
func Order(key string, members []Member) []int {
	scores := make([]float64, len(members))
	idx := make([]int, len(members))
	for i, m := range members {
		scores[i] = Score(key, m)
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if c := cmp.Compare(scores[b], scores[a]); c != 0 {
			return c
		}
		return cmp.Compare(members[a].ID, members[b].ID)
	})
	return idx
}

// unit maps (key, id) to a uniform float in the open interval (0,1). FNV-1a
// alone mixes its last bytes poorly, so its sum goes through splitmix64's
// finalizer; a zero separator keeps ("ab","c") apart from ("a","bc").
func unit(key, id string) float64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(id))
	x := mix(h.Sum64())
	return (float64(x>>11) + 0.5) / (1 << 53)
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
