package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func members(ws ...int) []Member {
	out := make([]Member, len(ws))
	for i, w := range ws {
		out[i] = Member{ID: fmt.Sprintf("198.18.0.%d:8002", i+1), Weight: w}
	}
	return out
}

func home(key string, ms []Member) string { return ms[Order(key, ms)[0]].ID }

func ids(key string, ms []Member) []string {
	var out []string
	for _, i := range Order(key, ms) {
		out = append(out, ms[i].ID)
	}
	return out
}

func TestOrderIsAPermutationAndStable(t *testing.T) {
	ms := members(1, 1, 1, 1)
	for k := 0; k < 100; k++ {
		key := fmt.Sprint("task-", k)
		a, b := ids(key, ms), ids(key, ms)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s: order not stable: %v vs %v", key, a, b)
		}
		seen := map[string]bool{}
		for _, id := range a {
			seen[id] = true
		}
		if len(seen) != len(ms) {
			t.Fatalf("%s: order %v is not a permutation", key, a)
		}
	}
}

func TestOrderIgnoresListOrder(t *testing.T) {
	ms := members(1, 2, 3, 1, 1)
	r := rand.New(rand.NewPCG(1, 2))
	for k := 0; k < 1000; k++ {
		key := fmt.Sprint("task-", k)
		want := fmt.Sprint(ids(key, ms))
		shuffled := append([]Member(nil), ms...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := fmt.Sprint(ids(key, shuffled)); got != want {
			t.Fatalf("%s: %s with the list shuffled, %s before", key, got, want)
		}
	}
}

// TestWeightProportion checks each member is home to its weight's share of
// 10,000 keys within 5% of that share.
func TestWeightProportion(t *testing.T) {
	for _, ws := range [][]int{{1, 1, 1}, {1, 2}, {1, 2, 3, 4}, {5, 1, 1, 1}} {
		ms := members(ws...)
		total := 0
		for _, w := range ws {
			total += w
		}
		counts := map[string]int{}
		const n = 10000
		for k := 0; k < n; k++ {
			counts[home(fmt.Sprint("task-", k), ms)]++
		}
		for _, m := range ms {
			want := float64(n) * float64(m.Weight) / float64(total)
			if got := float64(counts[m.ID]); math.Abs(got-want) > 0.05*want {
				t.Errorf("weights %v: %s home to %.0f keys, want %.0f within 5%%", ws, m.ID, got, want)
			}
		}
	}
}

// TestMinimalMovement checks that adding a member moves only keys to it, and
// removing one moves only the keys it was home to, each to the member that
// was second for them.
func TestMinimalMovement(t *testing.T) {
	ms := members(1, 1, 1, 1)
	grown := append(append([]Member(nil), ms...), Member{ID: "198.18.0.99:8002", Weight: 1})
	shrunk := append([]Member(nil), ms[:2]...)
	shrunk = append(shrunk, ms[3])
	moved := 0
	const n = 10000
	for k := 0; k < n; k++ {
		key := fmt.Sprint("task-", k)
		before := ids(key, ms)
		if after := home(key, grown); after != before[0] {
			if after != "198.18.0.99:8002" {
				t.Fatalf("%s moved from %s to %s, not to the new member", key, before[0], after)
			}
			moved++
		}
		after := home(key, shrunk)
		switch {
		case before[0] != ms[2].ID && after != before[0]:
			t.Fatalf("%s moved from %s to %s when %s left", key, before[0], after, ms[2].ID)
		case before[0] == ms[2].ID && after != before[1]:
			t.Fatalf("%s moved to %s, not its second member %s", key, after, before[1])
		}
	}
	if want := n / 5; math.Abs(float64(moved-want)) > 0.05*float64(want) {
		t.Errorf("%d keys moved to the new member, want about %d", moved, want)
	}
}

func TestScoreWeightZeroIsOne(t *testing.T) {
	if Score("k", Member{ID: "a", Weight: 0}) != Score("k", Member{ID: "a", Weight: 1}) {
		t.Fatal("weight 0 should count as 1")
	}
}
