package urlutil

import "testing"

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ContentRange
		ok   bool
	}{
		{"bytes 0-9/100", ContentRange{0, 9, 100}, true},
		{"bytes 90-99/*", ContentRange{90, 99, -1}, true},
		{" Bytes  5-5/6", ContentRange{5, 5, 6}, true},
		{"bytes */100", ContentRange{}, false},
		{"bytes 9-0/100", ContentRange{}, false},
		{"bytes 0-100/100", ContentRange{}, false},
		{"bytes -1-5/100", ContentRange{}, false},
		{"BYtes 0-0/-2", ContentRange{}, false},
		{"bytes +0-9/100", ContentRange{}, false},
		{"bytes 0-+9/100", ContentRange{}, false},
		{"bytes 0-9/+100", ContentRange{}, false},
		{"items 0-9/100", ContentRange{}, false},
		{"bytes 0-9", ContentRange{}, false},
		{"", ContentRange{}, false},
	} {
		got, err := ParseContentRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("%q: %+v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-9/100")
	f.Add("bytes 0-9/*")
	f.Fuzz(func(t *testing.T, v string) {
		cr, err := ParseContentRange(v)
		if err == nil && (cr.First < 0 || cr.Last < cr.First || (cr.Total >= 0 && cr.Last >= cr.Total) || cr.Total < -1) {
			t.Fatalf("%q accepted as %+v", v, cr)
		}
	})
}
