package urlutil

import (
	"reflect"
	"testing"
)

func TestValidate(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://a/b": true, "https://h:8080/x?y=1": true,
		"": false, "ftp://a/b": false, "file:///etc/passwd": false, "http://": false, "a/b": false, "http://[::1": false,
	} {
		if _, err := Validate(raw); (err == nil) != ok {
			t.Errorf("Validate(%q) err = %v", raw, err)
		}
	}
}

func TestFilterQuery(t *testing.T) {
	for _, tc := range []struct{ raw, filter, want string }{
		{"http://h/f?a=1&b=2&c=3", "b", "http://h/f?a=1&c=3"},
		{"http://h/f?a=1&b=2", "a&b", "http://h/f"},
		{"http://h/f?a=1&b=2#frag", "a&b", "http://h/f#frag"},
		{"http://h/f?a=1", "", "http://h/f?a=1"},
		{"http://h/f", "a", "http://h/f"},
		{"http://h/f?token=x&Expires=1&k=v", "token&Expires", "http://h/f?k=v"},
	} {
		if got := FilterQuery(tc.raw, tc.filter); got != tc.want {
			t.Errorf("FilterQuery(%q, %q) = %q, want %q", tc.raw, tc.filter, got, tc.want)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	got, err := ParseHeaders([]string{"a: 1", "A:2", "Range: bytes=0-9", "empty:  ", "x-y: z:w"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1,2", "Range": "bytes=0-9", "X-Y": "z:w"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if _, err := ParseHeaders([]string{"nocolon"}); err == nil {
		t.Error("want error for a header without a colon")
	}
	if l := HeaderLines(want); !reflect.DeepEqual(l, []string{"A: 1,2", "Range: bytes=0-9", "X-Y: z:w"}) {
		t.Errorf("HeaderLines = %v", l)
	}
}

func FuzzFilterQuery(f *testing.F) {
	f.Add("http://h/f?a=1&b=2", "a")
	f.Fuzz(func(t *testing.T, raw, filter string) {
		_ = FilterQuery(raw, filter)
	})
}

func FuzzParseHeaders(f *testing.F) {
	f.Add("a: b")
	f.Fuzz(func(t *testing.T, l string) {
		h, err := ParseHeaders([]string{l})
		if err == nil && len(h) > 1 {
			t.Fatalf("one line gave %d headers", len(h))
		}
	})
}
