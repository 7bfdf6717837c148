package taskid

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestRegistrationIDNormalizes(t *testing.T) {
	base := Registration{RawURL: "http://o/f?a=1", TaskURL: "http://o/f"}
	id, err := base.ID()
	if err != nil {
		t.Fatal(err)
	}
	if want := ID("http://o/f", "", "", nil); id != want {
		t.Fatalf("id %s, want %s", id, want)
	}
	noTask := Registration{RawURL: "http://o/f"}
	if got, _ := noTask.ID(); got != id {
		t.Fatalf("task URL should default to the raw URL: %s != %s", got, id)
	}
	upper := Registration{RawURL: "http://o/f", Md5: "D41D8CD98F00B204E9800998ECF8427E", Identifier: "x"}
	lower := Registration{RawURL: "http://o/f", Md5: "d41d8cd98f00b204e9800998ecf8427e"}
	a, _ := upper.ID()
	b, _ := lower.ID()
	if a != b || a == id {
		t.Fatalf("md5 case or identifier changed the id: %s %s %s", a, b, id)
	}
	ranged := Registration{RawURL: "http://o/f", Headers: []string{"range: bytes=0-9"}}
	if got, _ := ranged.ID(); got != ID("http://o/f", "", "", map[string]string{"Range": "bytes=0-9"}) || got == id {
		t.Fatalf("range not read as the supernode reads it: %s", got)
	}
	ident := Registration{RawURL: "http://o/f", Identifier: "sha256:ab"}
	if got, _ := ident.ID(); got == id {
		t.Fatal("identifier ignored")
	}
}

func TestRegistrationIDBadInput(t *testing.T) {
	for _, r := range []Registration{
		{RawURL: "http://o/f", Md5: "xyz"},
		{RawURL: "http://o/f", Headers: []string{"no colon"}},
	} {
		if _, err := r.ID(); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

// A task trusted by default keeps the ID of v1's rule (generateTaskID of
// a v1 supernode, with Damselfly's salt), the one it had before trust
// counted; any other trust gives another ID, the same whatever order the
// CAs are listed in.
func TestTrustID(t *testing.T) {
	v1 := sha256.Sum256([]byte(salt + "https://o/f" + "sha256:ab" + "bytes=0-9" + salt))
	h := map[string]string{"Range": "bytes=0-9"}
	if got := (Trust{}).ID("https://o/f", "", "sha256:ab", h); got != hex.EncodeToString(v1[:]) {
		t.Fatalf("default trust: %s, not v1's ID", got)
	}
	a, b := []byte("pem a"), []byte("pem b")
	ids := map[string]Trust{}
	for _, tr := range []Trust{{}, {Insecure: true}, {RootCAs: [][]byte{a}}, {RootCAs: [][]byte{a, b}}, {Insecure: true, RootCAs: [][]byte{a}}} {
		id := tr.ID("https://o/f", "", "", nil)
		if other, dup := ids[id]; dup {
			t.Errorf("%+v and %+v share task %s", tr, other, id)
		}
		ids[id] = tr
	}
	if x, y := (Trust{RootCAs: [][]byte{a, b}}).Key(), (Trust{RootCAs: [][]byte{b, a}}).Key(); x != y {
		t.Errorf("CA order changes the key: %s, %s", x, y)
	}
	reg := Registration{RawURL: "https://o/f", Trust: Trust{Insecure: true}}
	if got, _ := reg.ID(); got != (Trust{Insecure: true}).ID("https://o/f", "", "", nil) {
		t.Errorf("registration ignores its trust: %s", got)
	}
}
