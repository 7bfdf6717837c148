package urlutil

import "testing"

func TestParseByteRange(t *testing.T) {
	good := map[string]ByteRange{
		"bytes=1000-5000999": {First: 1000, Last: 5000999},
		" Bytes = 0-0 ":      {First: 0, Last: 0},
		"bytes=7-":           {First: 7, Last: -1},
		"bytes=-10":          {Suffix: 10},
	}
	for v, want := range good {
		got, err := ParseByteRange(v)
		if err != nil || got != want {
			t.Errorf("ParseByteRange(%q) = %+v, %v; want %+v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "bytes", "bytes=", "bytes=-", "bytes=-0", "bytes=5-3", "bytes=0-1,3-4", "items=0-1",
		"bytes=a-1", "bytes=+1-2", "bytes=-1-2", "bytes=1-+2", "bytes=99999999999999999999-"} {
		if got, err := ParseByteRange(v); err == nil {
			t.Errorf("ParseByteRange(%q) = %+v, want an error", v, got)
		}
	}
}
