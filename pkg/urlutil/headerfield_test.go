package urlutil

import "testing"

func TestCheckHeaderLine(t *testing.T) {
	for line, ok := range map[string]bool{
		"X-A: b":             true,
		" X-A :  b c\t":      true,
		"X-A: caf\xc3\xa9":   true,
		"Authorization: a=b": true,
		"Bad Header: x":      false,
		"X(A): b":            false,
		"X\xc3\xa9: b":       false,
		"X-A: b\r\nX-Inj: c": false,
		"X-A: b\nc":          false,
		"X-A: b\x00":         false,
		"X-A: b\x7f":         false,
		": b":                false,
		"X:\r\ny":            false,
		"\r\nX: y":           true,
		"X: y\r":             true,
		"X: y\r\n":           true,
		"X: y\r\n\r\nZ: w":   false,
		"nocolon":            false,
	} {
		if err := CheckHeaderLine(line); (err == nil) != ok {
			t.Errorf("%q: %v, want ok %v", line, err, ok)
		}
	}
}
