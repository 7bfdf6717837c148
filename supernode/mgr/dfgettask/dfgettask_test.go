package dfgettask

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestDfgetTasks(t *testing.T) {
	m := New(Config{SuperPID: "super"}, Metrics{})
	if err := m.Add(Task{CID: "c"}); err == nil {
		t.Fatal("incomplete task accepted")
	}
	if err := m.Add(Task{CID: "c", TaskID: "t", PeerID: "p", Path: "/peer/file/x"}); err != nil {
		t.Fatal(err)
	}
	got, err := m.GetByPeer("p", "t")
	if err != nil || got.CID != "c" || got.Status != StatusWaiting {
		t.Fatalf("by peer: %+v %v", got, err)
	}
	if err := m.SetStatus("c", "t", StatusSuccess); err != nil {
		t.Fatal(err)
	}
	_ = m.SetStatus("c", "t", StatusFailed)
	if got, _ := m.Get("c", "t"); got.Status != StatusSuccess {
		t.Fatalf("success is final: %s", got.Status)
	}
	if len(m.ByTask("t")) != 1 || len(m.ByPeer("p")) != 1 {
		t.Fatal("indexes")
	}
	m.Delete("c", "t")
	if _, err := m.Get("c", "t"); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted task found")
	}
	if _, err := m.GetByPeer("p", "t"); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted task found by peer")
	}
}

// ParseAddr spells each address one way, whatever the socket family and
// with or without a port: an IPv4 client seen on an IPv6 socket is its
// IPv4 address. Anything else is the zero Addr.
func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.1:40000": "198.18.0.1", "198.18.0.1": "198.18.0.1",
		"[::ffff:198.18.0.1]:40000": "198.18.0.1", "::ffff:198.18.0.1": "198.18.0.1",
		"[2001:db8::1]:80": "2001:db8::1", "[fe80::1%eth0]:80": "fe80::1%eth0",
		"": "invalid IP", "host:80": "invalid IP", "198.18.0.1:x": "invalid IP",
	} {
		if got := ParseAddr(in).String(); got != want {
			t.Errorf("ParseAddr(%q) = %s, want %s", in, got, want)
		}
	}
}

// Caller gives a client's record only to a call from the address it
// registered from (in any spelling); from another one the answer is an
// unknown client's, carrying both addresses for the log. AnyAddress
// takes every address.
func TestCaller(t *testing.T) {
	owner, other := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	bound, free := New(Config{}, Metrics{}), New(Config{AnyAddress: true}, Metrics{})
	for _, m := range []*Manager{bound, free} {
		if err := m.Add(Task{CID: "c", TaskID: "t", PeerID: "p", Path: "/peer/file/c", Addr: owner}); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []string{"198.18.0.1:1", "[::ffff:198.18.0.1]:2"} {
		if got, err := bound.Caller("c", "t", ParseAddr(from)); err != nil || got.PeerID != "p" {
			t.Errorf("from %s: %+v %v", from, got, err)
		}
	}
	_, err := bound.Caller("c", "t", other)
	_, unknown := bound.Caller("nobody", "t", other)
	var fe *ForeignError
	if err == nil || !errors.As(err, &fe) || fe.Bound != owner || fe.From != other {
		t.Fatalf("from %s: %v", other, err)
	}
	if got, want := strings.Replace(err.Error(), "client c ", "client nobody ", 1), unknown.Error(); got != want ||
		!errors.Is(unknown, ErrNotFound) {
		t.Fatalf("from %s: %q, want an unknown client's %q", other, err, unknown)
	}
	if got, err := free.Caller("c", "t", other); err != nil || got.PeerID != "p" {
		t.Fatalf("any address, from %s: %+v %v", other, got, err)
	}
}
