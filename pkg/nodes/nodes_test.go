package nodes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseNodes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		fail bool
	}{
		{in: "10.0.0.1", want: "10.0.0.1:8002=1"},
		{in: "10.0.0.1:8003", want: "10.0.0.1:8003=1"},
		{in: "a:1=2,b=4", want: "a:1=1,b:8002=2"},
		{in: " a , b:9=3 ", want: "a:8002=1,b:9=3"},
		{in: "", fail: true}, {in: ",", fail: true}, {in: "a:0", fail: true}, {in: "a:99999", fail: true},
		{in: "a=0", fail: true}, {in: "a=x", fail: true}, {in: ":80", fail: true}, {in: "a:b:c", fail: true},
		{in: "a/b", fail: true}, {in: "a=1=2", fail: true},
	} {
		var l List
		err := l.Set(tc.in)
		if (err != nil) != tc.fail {
			t.Errorf("%q: err %v, want fail=%v", tc.in, err, tc.fail)
			continue
		}
		if !tc.fail && l.String() != tc.want {
			t.Errorf("%q = %q, want %q", tc.in, l.String(), tc.want)
		}
	}
}

func TestRandomIsWeightedAndComplete(t *testing.T) {
	l, err := ParseList("a=1,b=3")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	first := map[string]int{}
	for i := 0; i < 4000; i++ {
		o := List(l).Random(r)
		if len(o) != 2 || o[0].Host == o[1].Host {
			t.Fatalf("order %v is not a permutation", o)
		}
		first[o[0].Host]++
	}
	if first["b"] < 2700 || first["b"] > 3300 {
		t.Fatalf("b first %d of 4000 times, want about 3000", first["b"])
	}
}

// FuzzParseNodes: the node list parser never panics, and what it accepts
// round-trips through its String form.
func FuzzParseNodes(f *testing.F) {
	for _, s := range []string{"a", "a:1", "a:1=2,b", "10.0.0.1:8002=3", "=", ":::", "a=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var l List
		if err := l.Set(s); err != nil {
			return
		}
		var again List
		if err := again.Set(l.String()); err != nil {
			t.Fatalf("%q parsed to %q which does not parse: %v", s, l.String(), err)
		}
		for _, n := range l {
			if n.Port < 1 || n.Port > 65535 || n.Weight < 1 || n.Host == "" {
				t.Fatalf("%q gave bad node %+v", s, n)
			}
		}
	})
}

func TestHomeIgnoresListOrderAndWeighs(t *testing.T) {
	a, err := ParseList("198.18.0.1,198.18.0.2:9000=2,198.18.0.3")
	if err != nil {
		t.Fatal(err)
	}
	b := List{a[2], a[0], a[1]}
	first := map[string]int{}
	for i := 0; i < 4000; i++ {
		key := fmt.Sprint("task-", i)
		x, y := a.Home(key), b.Home(key)
		if fmt.Sprint(x) != fmt.Sprint(y) || len(x) != 3 {
			t.Fatalf("%s: %v and %v", key, x, y)
		}
		first[x[0].Host]++
	}
	if n := first["198.18.0.2"]; n < 1900 || n > 2100 {
		t.Fatalf("weight 2 node first for %d of 4000 keys, want about 2000", n)
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func TestResolveExpandsNames(t *testing.T) {
	l, err := ParseList("snodes:8003=2,198.18.0.9,dead,198.18.0.2:8003")
	if err != nil {
		t.Fatal(err)
	}
	got, errs := l.Resolve(context.Background(), fakeResolver{"snodes": {"198.18.0.3", "198.18.0.2"}})
	want := "198.18.0.2:8003=2,198.18.0.3:8003=2,198.18.0.9:8002=1,dead:8002=1"
	if got.String() != want {
		t.Fatalf("resolved %s, want %s", got.String(), want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "dead") {
		t.Fatalf("errors %v, want one naming dead", errs)
	}
}

// TestResolveOrderIndependent: the same name answered in another order (DNS
// round robin) gives the same home.
func TestResolveOrderIndependent(t *testing.T) {
	l, _ := ParseList("snodes")
	x, _ := l.Resolve(context.Background(), fakeResolver{"snodes": {"198.18.0.1", "198.18.0.2", "198.18.0.3"}})
	y, _ := l.Resolve(context.Background(), fakeResolver{"snodes": {"198.18.0.3", "198.18.0.1", "198.18.0.2"}})
	for i := 0; i < 100; i++ {
		key := fmt.Sprint(i)
		if x.Home(key)[0] != y.Home(key)[0] {
			t.Fatalf("%s: home %v vs %v", key, x.Home(key)[0], y.Home(key)[0])
		}
	}
}
