package config

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
)

// DefaultSupernodePort is the supernode API port used when a node omits it.
const DefaultSupernodePort = 8002

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

// ParseNode reads "host[:port][=weight]". The port defaults to 8002 and the
// weight to 1; both must be in range.
func ParseNode(s string) (Node, error) {
	s = strings.TrimSpace(s)
	addr, w, hasW := strings.Cut(s, "=")
	n := Node{Port: DefaultSupernodePort, Weight: 1}
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

// ParseNodes reads a comma-separated node list. Weights are divided by their
// greatest common divisor, as Dragonfly 1.x does.
func ParseNodes(s string) ([]Node, error) {
	var out []Node
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		n, err := ParseNode(part)
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

// NodeList is the --node flag: a pflag.Value holding the parsed list. As in
// Dragonfly 1.x the last occurrence of the flag wins.
type NodeList []Node

// Set implements pflag.Value.
func (l *NodeList) Set(s string) error {
	nodes, err := ParseNodes(s)
	if err != nil {
		return err
	}
	*l = nodes
	return nil
}

// String implements pflag.Value.
func (l *NodeList) String() string {
	parts := make([]string, 0, len(*l))
	for _, n := range *l {
		parts = append(parts, n.String())
	}
	return strings.Join(parts, ",")
}

// Type implements pflag.Value.
func (l *NodeList) Type() string { return "nodes" }

// Order returns the nodes in the order to try them: a weighted random order
// without repetition, so a heavier node is more likely to come first and
// every node is tried once when the earlier ones fail.
func (l NodeList) Order(r *rand.Rand) []Node {
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
