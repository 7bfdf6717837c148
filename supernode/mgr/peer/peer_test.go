package peer

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

func TestPeers(t *testing.T) {
	m := New(nil, nil)
	base := time.Unix(1000, 0)
	m.now = func() time.Time { return base }
	a, err := m.Register(types.PeerCreateRequest{IP: "10.0.0.1", HostName: "h", Port: 15000})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Register(types.PeerCreateRequest{IP: "10.0.0.1", HostName: "h", Port: 15000})
	if err != nil || a == b {
		t.Fatalf("same host twice: %s %s %v", a, b, err)
	}
	if _, err := m.Register(types.PeerCreateRequest{IP: "nope"}); err == nil {
		t.Fatal("bad ip accepted")
	}
	if l := m.List(0, 0, false); len(l) != 2 || l[0].ID != a {
		t.Fatalf("list %+v", l)
	}
	if l := m.List(0, 0, true); l[0].ID != b {
		t.Fatalf("desc list %+v", l)
	}
	if l := m.List(1, 1, false); len(l) != 1 || l[0].ID != b {
		t.Fatalf("page 1 %+v", l)
	}
	if l := m.List(5, 1, false); len(l) != 0 {
		t.Fatalf("page past the end %+v", l)
	}
	// Numbers whose product overflows give an empty page, not a panic.
	for _, pg := range [][2]int{{1 << 62, 2}, {2, math.MaxInt}, {1, math.MaxInt}, {math.MaxInt, math.MaxInt}} {
		if l := m.List(pg[0], pg[1], false); len(l) != 0 {
			t.Fatalf("page %d of %d: %+v", pg[0], pg[1], l)
		}
	}
	if l := m.List(0, math.MaxInt, false); len(l) != 2 {
		t.Fatalf("first page of size MaxInt: %+v", l)
	}
	if err := m.Delete(a); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted peer: %v", err)
	}
	if err := m.Delete(a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
