package fwdbody

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// closedAfter serves its text, then fails as a body closed under its
// reader does.
type closedAfter struct{ r *strings.Reader }

func (c closedAfter) Read(p []byte) (int, error) {
	if c.r.Len() == 0 {
		return 0, http.ErrBodyReadAfterClose
	}
	return c.r.Read(p)
}

func (closedAfter) Close() error { return nil }

func TestBoundEndsAtDeclaredLength(t *testing.T) {
	r, _ := http.NewRequest("PUT", "http://o/", nil)
	r.Body, r.ContentLength = closedAfter{strings.NewReader("body")}, 4
	Bound(r)
	got, err := io.ReadAll(r.Body)
	if err != nil || string(got) != "body" {
		t.Fatalf("read %q, %v; want the body and EOF", got, err)
	}
	// The transport's excess check: one more read.
	if n, err := r.Body.Read(make([]byte, 8)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read past the length: %d, %v; want EOF without touching the body", n, err)
	}
}

// A body shorter than declared still reports what it got, so the
// transport sees the mismatch.
func TestBoundKeepsShortBodyShort(t *testing.T) {
	r, _ := http.NewRequest("PUT", "http://o/", nil)
	r.Body, r.ContentLength = io.NopCloser(strings.NewReader("ab")), 4
	Bound(r)
	if got, err := io.ReadAll(r.Body); err != nil || string(got) != "ab" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestBoundLeavesUnknownLength(t *testing.T) {
	r, _ := http.NewRequest("PUT", "http://o/", nil)
	body := io.NopCloser(strings.NewReader("x"))
	r.Body, r.ContentLength = body, -1
	Bound(r)
	if r.Body != body {
		t.Error("a body of unknown length was wrapped")
	}
}
