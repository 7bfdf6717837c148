package metrics

import (
	"net/netip"
	"strconv"
	"sync"
)

// Every label value is a series kept for the life of the process, and the
// supernode's API is unauthenticated: a label taken from what a client
// sends must have a bounded number of values, or a client that sends a new
// one each time grows the supernode's memory and /metrics without end.
const (
	// MaxCallSystems bounds the callsystem values (free text in v1, from
	// registrations and /task/metrics). A deployment has a handful of
	// calling systems. The dfget collectors are labelled by callsystem,
	// peer and reason together, so the worst case is the product: with 32
	// callsystems and 32 peers (34 values each with Other and Invalid) and
	// 23 reasons, about 30,000 series, 18 MB of heap and a 3.6 MB /metrics
	// page; 64 of each would be four times that.
	MaxCallSystems = 32
	// MaxCallSystemLen bounds one callsystem value: a name, not a text.
	MaxCallSystemLen = 64
	// MaxPeers bounds the peer values. Being an IP address is no bound
	// (every IPv6 address is one, /task/metrics takes the IP from the body
	// and peer registration from the request), and the dfget collectors
	// multiply it by the callsystems. Larger clusters see their first 32
	// hosts by name and the rest as Other.
	MaxPeers = 32

	// Invalid is the value of a string a label does not accept (not an IP
	// address, not a known reason, a callsystem with odd characters).
	Invalid = "invalid"
	// Other is the value of every acceptable string once a label has
	// taken its maximum of distinct values.
	Other = "other"
)

// Label maps the strings clients send onto at most limit distinct label
// values (plus Invalid and Other). The first limit distinct canonical
// values keep their own series for the life of the process; later ones all
// go to Other. A string's value never changes once it has one (the set
// only grows, and it is full for good once full), so a gauge incremented
// and later decremented under the same string stays balanced.
type Label struct {
	canon func(string) (string, bool)
	limit int

	mu   sync.RWMutex
	seen map[string]struct{}
}

// NewLabel returns a label admitting up to limit values; canon gives a
// string's canonical value, or false for one the label refuses.
func NewLabel(limit int, canon func(string) (string, bool)) *Label {
	return &Label{canon: canon, limit: limit, seen: map[string]struct{}{}}
}

// Value is the label value for the client-supplied s.
func (l *Label) Value(s string) string {
	v, ok := l.canon(s)
	if !ok {
		return Invalid
	}
	l.mu.RLock()
	_, known := l.seen[v]
	l.mu.RUnlock()
	if known {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, known := l.seen[v]; known {
		return v
	}
	if len(l.seen) >= l.limit {
		return Other
	}
	l.seen[v] = struct{}{}
	return v
}

// Labels are the bounded labels of the supernode's collectors; each one is
// shared by every collector with that label, so the bound is on the
// values, whichever route a client sends them through.
type Labels struct {
	CallSystem *Label
	Peer       *Label
	Reason     *Label
}

// NewLabels returns fresh labels with the bounds above.
func NewLabels() *Labels {
	return &Labels{
		CallSystem: NewLabel(MaxCallSystems, callSystem),
		Peer:       NewLabel(MaxPeers, peerIP),
		Reason:     NewLabel(reasonValues, reason),
	}
}

// OrLabels returns l, or fresh labels when l is nil (a manager built
// without metrics still bounds what it puts in its unread collectors).
func OrLabels(l *Labels) *Labels {
	if l == nil {
		return NewLabels()
	}
	return l
}

// callSystem accepts names of letters, digits and . _ - : / (empty too: a
// client that names no calling system).
func callSystem(s string) (string, bool) {
	if len(s) > MaxCallSystemLen {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == ':' || c == '/') {
			return "", false
		}
	}
	return s, true
}

// peerIP accepts IP addresses, in one spelling each: an IPv4-mapped IPv6
// address is the IPv4 one, and a zone (free text) is dropped.
func peerIP(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	return a.Unmap().WithZone("").String(), true
}

// reasonValues is the number of values reason accepts.
const reasonValues = 2 * 11

// reason accepts the back-source reason codes of Dragonfly 1.x's dfget (v1
// reference §2.4; Damselfly's dfget reports the same ones), each maybe
// plus 1000 (--notbs refused the fallback), in their decimal spelling.
func reason(s string) (string, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return "", false
	}
	if n >= 1000 {
		n -= 1000
	}
	switch n {
	case 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 100:
		return s, true
	}
	return "", false
}
