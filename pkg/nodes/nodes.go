// Package nodes is a list of supernodes as users write it
// (host[:port][=weight], comma-separated) and the order to try them in. A
// dfget orders the list for each task by weighted rendezvous hashing of the
// task's ID, so all the peers of a file meet on the same supernode, its home;
// a supernode reads its --cluster list the same way. A host that resolves to
// several addresses (a headless service, several A records) stands for one
// member per address.
package nodes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/damselfly-p2p/damselfly/pkg/ring"
)

// DefaultPort is the supernode API port used when a node omits it.
const DefaultPort = 8002

// Node is one supernode address with its selection weight.
type Node struct {
	Host   string
	Port   int
	Weight int
}

// Addr is "host:port", ready to dial.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

// String is the host:port=weight form the node was given in.
func (n Node) String() string { return n.Addr() + "=" + strconv.Itoa(n.Weight) }

// Parse reads "host[:port][=weight]". The port defaults to 8002 and the
// weight to 1; both must be in range.
func Parse(s string) (Node, error) {
	s = strings.TrimSpace(s)
	addr, w, hasW := strings.Cut(s, "=")
	n := Node{Port: DefaultPort, Weight: 1}
	if hasW {
		v, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || v < 1 || v > 1000 {
			return Node{}, fmt.Errorf("invalid node %q: weight must be an integer in [1,1000]", s)
		}
		n.Weight = v
	}
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return Node{}, fmt.Errorf("invalid node %q: empty host", s)
	}
	host, port := addr, ""
	if h, p, err := net.SplitHostPort(addr); err == nil {
		host, port = h, p
	} else if strings.Contains(addr, ":") {
		return Node{}, fmt.Errorf("invalid node %q: %v", s, err)
	}
	if port != "" {
		v, err := strconv.Atoi(port)
		if err != nil || v < 1 || v > 65535 {
			return Node{}, fmt.Errorf("invalid node %q: port must be in [1,65535]", s)
		}
		n.Port = v
	}
	if host == "" || strings.ContainsAny(host, " /\\?#@[]") {
		return Node{}, fmt.Errorf("invalid node %q: bad host", s)
	}
	n.Host = host
	return n, nil
}

// ParseList reads a comma-separated node list. Weights are divided by their
// greatest common divisor, as Dragonfly 1.x does.
func ParseList(s string) (List, error) {
	var out List
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		n, err := Parse(part)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("invalid node list %q: no node", s)
	}
	g := 0
	for _, n := range out {
		g = gcd(g, n.Weight)
	}
	for i := range out {
		out[i].Weight /= g
	}
	return out, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// List is a node list, and the --node flag: a pflag.Value holding the
// parsed list. As in Dragonfly 1.x the last occurrence of the flag wins.
type List []Node

// Set implements pflag.Value.
func (l *List) Set(s string) error {
	nodes, err := ParseList(s)
	if err != nil {
		return err
	}
	*l = nodes
	return nil
}

// String implements pflag.Value.
func (l *List) String() string {
	parts := make([]string, 0, len(*l))
	for _, n := range *l {
		parts = append(parts, n.String())
	}
	return strings.Join(parts, ",")
}

// Type implements pflag.Value.
func (l *List) Type() string { return "nodes" }

// Random returns the nodes in Dragonfly 1.x's order: a weighted random
// order without repetition, so a heavier node is more likely to come first
// and every node is tried once when the earlier ones fail. The peers of one
// file then split over the supernodes, and each supernode reads the file
// from the origin: Home is the order to use.
func (l List) Random(r *rand.Rand) []Node {
	rest := append([]Node(nil), l...)
	out := make([]Node, 0, len(rest))
	for len(rest) > 0 {
		total := 0
		for _, n := range rest {
			total += n.Weight
		}
		pick := r.IntN(total)
		i := 0
		for ; i < len(rest)-1; i++ {
			if pick < rest[i].Weight {
				break
			}
			pick -= rest[i].Weight
		}
		out = append(out, rest[i])
		rest = append(rest[:i], rest[i+1:]...)
	}
	return out
}

// Home returns the nodes in the order to try them for the task whose ID is
// key: by weighted rendezvous hashing, so every dfget that knows the same
// nodes tries the same one first (the task's home) and, when it fails, the
// same next one. Nodes are identified by Addr, so the order does not depend
// on the order they are listed in.
func (l List) Home(key string) []Node {
	members := make([]ring.Member, len(l))
	for i, n := range l {
		members[i] = ring.Member{ID: n.Addr(), Weight: n.Weight}
	}
	out := make([]Node, 0, len(l))
	for _, i := range ring.Order(key, members) {
		out = append(out, l[i])
	}
	return out
}

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Resolve expands every node named by a host name into one node per
// address the name has, each with the node's port and weight, so a name
// with several A records is a cluster of those addresses. Nodes given as IP
// addresses stay as they are, and a node listed twice counts once. A name
// that does not resolve is kept as it is, with its error, so the caller can
// report it and the registration that dials it fails like any down node.
func (l List) Resolve(ctx context.Context, r Resolver) (List, []error) {
	var out List
	var errs []error
	seen := map[string]bool{}
	add := func(n Node) {
		if !seen[n.Addr()] {
			seen[n.Addr()] = true
			out = append(out, n)
		}
	}
	for _, n := range l {
		if net.ParseIP(n.Host) != nil {
			add(n)
			continue
		}
		addrs, err := r.LookupHost(ctx, n.Host)
		if err != nil || len(addrs) == 0 {
			errs = append(errs, fmt.Errorf("resolve supernode %s: %w", n.Host, orNoAddress(err)))
			add(n)
			continue
		}
		slices.Sort(addrs)
		for _, a := range addrs {
			add(Node{Host: a, Port: n.Port, Weight: n.Weight})
		}
	}
	return out, errs
}

func orNoAddress(err error) error {
	if err != nil {
		return err
	}
	return errors.New("no address")
}
