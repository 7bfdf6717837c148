package rate

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		fail bool
	}{
		{"0", 0, false}, {"1024", 1024, false}, {"20MB", 20 * MB, false}, {"20m", 20 * MB, false},
		{"64KB", 64 * KB, false}, {"64k", 64 * KB, false}, {"1G", GB, false}, {"2gb", 2 * GB, false},
		{"10B", 10, false}, {"1.5M", 3 * MB / 2, false}, {" 5K ", 5 * KB, false},
		{"", 0, true}, {"MB", 0, true}, {"-1", 0, true}, {"abc", 0, true}, {"1TB", 0, true},
		{"NaNM", 0, true}, {"1e300G", 0, true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.fail || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d fail=%v", tc.in, got, err, tc.want, tc.fail)
		}
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, r := range []Rate{0, 1, 1000, KB, 3 * MB, 20 * MB, 2 * GB} {
		got, err := Parse(r.String())
		if err != nil || got != r {
			t.Errorf("round trip of %d via %q = %d, %v", r, r.String(), got, err)
		}
	}
}

func TestLimiter(t *testing.T) {
	if Rate(0).Limiter(0) != nil {
		t.Error("zero rate must be unlimited")
	}
	if l := (10 * MB).Limiter(0); l == nil || l.Burst() != 64*1024 || int64(l.Limit()) != int64(10*MB) {
		t.Errorf("limiter %+v", l)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"20MB", "1.5g", "0", "k", "-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err == nil && r < 0 {
			t.Fatalf("Parse(%q) = %d", s, r)
		}
	})
}
