package progressbar

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	b := New(nil, 4<<20)
	b.start = time.Now().Add(-2 * time.Second)
	b.Add(1 << 20)
	line := b.Line(b.start.Add(2 * time.Second))
	for _, want := range []string{" 25%", "1.0MiB", "512.0KiB/s", "ETA 6s"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	if got := New(nil, -1).Line(time.Now()); !strings.Contains(got, "?%") {
		t.Errorf("unknown total: %q", got)
	}
}

func TestCloseEndsLine(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, 10)
	b.Add(10)
	b.Close()
	if !strings.HasSuffix(out.String(), "\n") || !strings.Contains(out.String(), "100%") {
		t.Fatalf("output %q", out.String())
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 3 << 30: "3.0GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
