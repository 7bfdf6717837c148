package manifest

import (
	"fmt"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, body            string
		layers, config, child string
	}{
		{"oci", `{"config":{"digest":"sha256:c"},"layers":[{"digest":"sha256:a"},{"digest":"sha256:b"}]}`, "[sha256:a sha256:b]", "sha256:c", "[]"},
		{"schema1", `{"fsLayers":[{"blobSum":"sha256:x"},{"blobSum":"sha256:e"},{"blobSum":"sha256:e"}]}`, "[sha256:x sha256:e]", "", "[]"},
		{"index", `{"manifests":[{"digest":"sha256:m1"},{"digest":"sha256:m2"}]}`, "[]", "", "[sha256:m1 sha256:m2]"},
	} {
		m, err := Parse([]byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := fmt.Sprint(m.LayerDigests()); got != tc.layers && !(tc.layers == "[]" && got == "[]") {
			t.Errorf("%s: layers %s, want %s", tc.name, got, tc.layers)
		}
		if m.ConfigDigest() != tc.config || fmt.Sprint(m.ChildDigests()) != tc.child {
			t.Errorf("%s: config %q children %v", tc.name, m.ConfigDigest(), m.ChildDigests())
		}
	}
	if _, err := Parse([]byte("{")); err == nil {
		t.Error("bad JSON parsed")
	}
}
