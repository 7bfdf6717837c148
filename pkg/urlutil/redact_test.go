package urlutil

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:pass@host/f?a=b":              "http://user:xxxxx@host/f?a=b",
		"https://tok@host:8443/f":                  "https://xxxxx@host:8443/f",
		"http://u:p@ss@host/":                      "http://u:xxxxx@host/",
		"http://host/path@x":                       "http://host/path@x",
		"http://host/?mail=a@b":                    "http://host/?mail=a@b",
		"no url here a@b":                          "no url here a@b",
		`get "http://u:s3cret@h/x": refused`:       `get "http://u:xxxxx@h/x": refused`,
		"http://a:1@h/ and https://b:2@g/":         "http://a:xxxxx@h/ and https://b:xxxxx@g/",
		"http://u:%zz@h/":                          "http://u:xxxxx@h/",
		"http://user:xxxxx@host/ (already masked)": "http://user:xxxxx@host/ (already masked)",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClip(t *testing.T) {
	if got := Clip("short", 10); got != "short" {
		t.Errorf("short: %q", got)
	}
	long := strings.Repeat("a", 1000)
	got := Clip(long, 256)
	if !strings.HasPrefix(got, strings.Repeat("a", 256)+"...(744 more bytes)") || len(got) > 300 {
		t.Errorf("long: %q", got)
	}
	// Never cuts a character in two.
	if got := Clip("ééé", 3); got != "é...(4 more bytes)" {
		t.Errorf("utf-8: %q", got)
	}
}
