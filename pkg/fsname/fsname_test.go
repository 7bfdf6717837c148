package fsname

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBaseCutsLongNamesOnRuneBoundary(t *testing.T) {
	for _, name := range []string{
		strings.Repeat("a", 250),
		strings.Repeat("é", 125),      // 2 bytes each: MaxBase falls between runes
		"a" + strings.Repeat("€", 83), // 3 bytes each: MaxBase falls inside one
	} {
		got := Base("/dir/" + name)
		if len(got) > MaxBase || len(got) < MaxBase-3 || !utf8.ValidString(got) || !strings.HasPrefix(name, got) {
			t.Errorf("Base of a %d-byte name: %d bytes %q", len(name), len(got), got)
		}
	}
	if got := Base("/dir/short.tar"); got != "short.tar" {
		t.Errorf("short name changed: %q", got)
	}
	if p := TempPattern("/d/"+strings.Repeat("x", 255), "backsource"); len(p) > 255-20 {
		t.Errorf("temp pattern of a 255-byte name is %d bytes", len(p))
	}
}
