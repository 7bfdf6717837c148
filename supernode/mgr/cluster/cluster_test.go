package cluster

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/ring"
)

// fakeResolver answers from a table, as a DNS name with several A records.
type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func pingServer(t *testing.T) string {
	t.Helper()
	return pingServerT(t).Listener.Addr().String()
}

func pingServerT(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func list(t *testing.T, s string) nodes.List {
	t.Helper()
	l, err := nodes.ParseList(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A member that does not answer is skipped within a probe's timeout, and
// every task whose home it would be goes to the next member of its order.
func TestHomeSkipsDeadMember(t *testing.T) {
	live := pingServer(t)
	// A listener that accepts and never answers: a probe must time out.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	self := "127.0.0.1:1" // never probed
	c := New(Config{Nodes: list(t, self+","+live+","+hang.Addr().String()), Self: self, Interval: time.Hour,
		Timeout: 300 * time.Millisecond}, fakeResolver{}, nil, logrus.New())
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	c.Start(ctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("first round took %s with a member that hangs; want under a second", d)
	}
	info := c.Info()
	alive := map[string]bool{}
	for _, m := range info.Members {
		alive[m.ID] = m.Alive
		if m.ID == hang.Addr().String() && m.LastErr == "" {
			t.Errorf("dead member has no error: %+v", m)
		}
	}
	if !alive[self] || !alive[live] || alive[hang.Addr().String()] || len(info.Members) != 3 {
		t.Fatalf("liveness %v", alive)
	}
	members := []ring.Member{{ID: self, Weight: 1}, {ID: live, Weight: 1}, {ID: hang.Addr().String(), Weight: 1}}
	var toDead, toLive, toSelf int
	for i := range 300 {
		key := "task-" + string(rune('a'+i%26)) + time.Duration(i).String()
		order := ring.Order(key, members)
		want := members[order[0]].ID
		if want == hang.Addr().String() {
			want = members[order[1]].ID
			toDead++
		}
		got := c.Home(key)
		if got != want {
			t.Fatalf("home of %s = %s, want %s", key, got, want)
		}
		switch c.Via(key) {
		case "":
			toSelf++
		case live:
			toLive++
		default:
			t.Fatalf("via %s", c.Via(key))
		}
	}
	if toDead == 0 || toLive == 0 || toSelf == 0 {
		t.Errorf("keys homed: %d on the dead member, %d via the live one, %d here", toDead, toLive, toSelf)
	}
	cancel()
	c.Wait()
}

// A name with several addresses is one member per address, and a name's
// change is followed at the next round.
func TestNameExpandsToMembers(t *testing.T) {
	r := fakeResolver{"sn.test": {"192.0.2.3", "192.0.2.2"}}
	c := New(Config{Nodes: list(t, "sn.test:8002=2,192.0.2.9=1"), Self: "192.0.2.2:8002", Timeout: 50 * time.Millisecond}, r, nil, logrus.New())
	c.round(context.Background())
	info := c.Info()
	if len(info.Members) != 3 || info.Members[0].ID != "192.0.2.2:8002" || !info.Members[0].Self ||
		info.Members[1].ID != "192.0.2.3:8002" || info.Members[1].Weight != 2 || info.Members[1].Host != "sn.test" ||
		info.Members[2].Weight != 1 || info.Members[2].Alive {
		t.Fatalf("members %+v", info.Members)
	}
	r["sn.test"] = []string{"192.0.2.2"}
	c.round(context.Background())
	if n := len(c.Info().Members); n != 2 {
		t.Fatalf("%d members after the name lost an address", n)
	}
	for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
		if c.Via(key) != "" {
			t.Fatal("a task goes to a member that does not answer")
		}
	}
}

// A member that was alive and stops answering in time keeps its place for
// one probe (a busy member is not dropped at once); one that refuses
// connections is dead at the next probe.
func TestSlowMemberSecondChance(t *testing.T) {
	hang := make(chan struct{})
	var slow atomic.Bool
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer s.Close()
	defer close(hang)
	rs := pingServerT(t)
	refused := rs.Listener.Addr().String()
	self := "127.0.0.1:1"
	addr := s.Listener.Addr().String()
	c := New(Config{Nodes: list(t, self+","+addr+","+refused), Self: self, Timeout: 100 * time.Millisecond}, fakeResolver{}, nil, logrus.New())
	alive := func() map[string]bool {
		out := map[string]bool{}
		for _, m := range c.Info().Members {
			out[m.ID] = m.Alive
		}
		return out
	}
	c.round(context.Background())
	if a := alive(); !a[addr] || !a[refused] {
		t.Fatalf("first round %v", a)
	}
	slow.Store(true)
	rs.Close() // its port now refuses connections
	c.round(context.Background())
	if a := alive(); !a[addr] || a[refused] {
		t.Fatalf("after one slow probe %v: want the slow member kept, the refusing one dead", a)
	}
	c.round(context.Background())
	if a := alive(); a[addr] {
		t.Fatalf("after two slow probes %v: want the slow member dead", a)
	}
}

// flakyResolver answers from a table, or fails every lookup while down (a
// DNS server that times out, or a lookup slower than the round).
type flakyResolver struct {
	fakeResolver
	down atomic.Bool
}

func (f *flakyResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	if f.down.Load() {
		return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true, IsTemporary: true}
	}
	return f.fakeResolver.LookupHost(ctx, host)
}

// A round whose lookup of the cluster's name fails keeps the addresses the
// name had: the homes stay where every member and dfget put them. The
// name itself, probed instead, is no member: a probe reaches whichever
// address its own lookup gives, and that one would be home to every task
// (or, as here, the name does not resolve for the probe either, and every
// task is read from the origin by whichever member it reaches).
func TestLookupFailureKeepsMembers(t *testing.T) {
	live := pingServerT(t)
	_, port, err := net.SplitHostPort(live.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// The live member answers on 127.0.0.1; this one is 127.0.0.2, never
	// probed (every address of a name has the name's port).
	r := &flakyResolver{fakeResolver: fakeResolver{"sn.test": {"127.0.0.1", "127.0.0.2"}}}
	self, other := "127.0.0.2:"+port, "127.0.0.1:"+port
	c := New(Config{Nodes: list(t, "sn.test:"+port), Self: self, Timeout: 300 * time.Millisecond}, r, nil, logrus.New())
	c.round(context.Background())
	var keys []string
	for i := 0; len(keys) < 20; i++ {
		if key := "task-" + strconv.Itoa(i); c.Via(key) == other {
			keys = append(keys, key)
		}
	}
	r.down.Store(true)
	c.round(context.Background())
	for _, key := range keys {
		if via := c.Via(key); via != other {
			t.Fatalf("after one failed lookup the task %s whose home is %s is read via %q; members %+v", key, other, via, c.Info().Members)
		}
	}
}
