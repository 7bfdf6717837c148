package cdn

import (
	"net/http"
	"testing"
	"time"
)

// A Last-Modified date is strong only when the answer's Date is at least a
// second later (RFC 9110 8.8.2.2); without a Date, or with one that does
// not parse, it is weak.
func TestStrongLastModified(t *testing.T) {
	lm := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	at := func(d time.Duration) string { return lm.Add(d).Format(http.TimeFormat) }
	for name, tc := range map[string]struct {
		lm, date string
		want     bool
	}{
		"no Date":               {lm: at(0), want: false},
		"Date equal":            {lm: at(0), date: at(0), want: false},
		"Date 1 s later":        {lm: at(0), date: at(time.Second), want: true},
		"Date a day later":      {lm: at(0), date: at(24 * time.Hour), want: true},
		"Date earlier":          {lm: at(0), date: at(-time.Second), want: false},
		"Date does not parse":   {lm: at(0), date: "yesterday", want: false},
		"no Last-Modified":      {date: at(time.Second), want: false},
		"Last-Modified garbled": {lm: "soon", date: at(time.Second), want: false},
	} {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			if tc.lm != "" {
				h.Set("Last-Modified", tc.lm)
			}
			if tc.date != "" {
				h.Set("Date", tc.date)
			}
			if got := strongLastModified(h); got != tc.want {
				t.Fatalf("strongLastModified(Last-Modified %q, Date %q) = %v, want %v", tc.lm, tc.date, got, tc.want)
			}
		})
	}
	// HTTP dates have no fraction of a second: the rule itself, below one.
	for d, want := range map[time.Duration]bool{0: false, 999 * time.Millisecond: false, time.Second: true, 1500 * time.Millisecond: true} {
		if got := strongAt(lm, lm.Add(d)); got != want {
			t.Errorf("strongAt(Date %v after) = %v, want %v", d, got, want)
		}
	}
}
