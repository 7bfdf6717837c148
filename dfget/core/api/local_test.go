package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Without a token there is no peer server of ours: no local call is made
// (a listener on the port would answer it, rate and ring included).
func TestLocalCallsWantToken(t *testing.T) {
	var calls atomic.Int32
	host, port := holder(t, func(r *http.Request) (int, []byte) {
		calls.Add(1)
		return http.StatusOK, []byte("1")
	})
	ctx := context.Background()
	for _, tok := range []*string{nil, new(string)} {
		c := New()
		if tok != nil {
			c.SetLocalToken(*tok)
		}
		if _, err := c.FairRate(ctx, host, port, "x", 10); !errors.Is(err, ErrServerUnproven) {
			t.Errorf("rate without a token: %v", err)
		}
		if _, err := c.RegisterStreamTask(ctx, host, port, StreamTask{TaskFileName: "x"}); !errors.Is(err, ErrServerUnproven) {
			t.Errorf("stream task without a token: %v", err)
		}
		if _, err := c.CheckServer(ctx, host, port, "x", "/d", 0); !errors.Is(err, ErrServerUnproven) {
			t.Errorf("check without a token: %v", err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d calls reached the listener", n)
	}
}

// The check sends the nonce and its MAC, never the token, and takes only
// an answer with the proof of that nonce.
func TestCheckServerWantsProof(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proof func(r *http.Request) string
		ok    bool
	}{
		{"proof", func(r *http.Request) string { return CheckProof("tok", r.Header.Get(HeaderCheckNonce)) }, true},
		{"none", func(*http.Request) string { return "" }, false},
		{"echoed mac", func(r *http.Request) string { return r.Header.Get(HeaderCheckAuth) }, false},
		{"other token", func(r *http.Request) string { return CheckProof("other", r.Header.Get(HeaderCheckNonce)) }, false},
		{"old nonce", func(*http.Request) string { return CheckProof("tok", "00112233445566778899aabbccddeeff") }, false},
	} {
		var sawToken atomic.Bool
		s := holderHeader(t, func(r *http.Request, h http.Header) {
			sawToken.Store(r.Header.Get(HeaderLocalToken) != "")
			if !ValidNonce(r.Header.Get(HeaderCheckNonce)) ||
				r.Header.Get(HeaderCheckAuth) != CheckAuth("tok", r.Header.Get(HeaderCheckNonce)) {
				t.Errorf("%s: nonce %q auth %q", tc.name, r.Header.Get(HeaderCheckNonce), r.Header.Get(HeaderCheckAuth))
			}
			h.Set(HeaderCheckProof, tc.proof(r))
		})
		c := New()
		c.SetLocalToken("tok")
		body, err := c.CheckServer(context.Background(), "127.0.0.1", s, "x", "/d", 0)
		if tc.ok && (err != nil || body != "x@v") {
			t.Errorf("%s: %q %v", tc.name, body, err)
		}
		if !tc.ok && !errors.Is(err, ErrServerUnproven) {
			t.Errorf("%s: %q %v, want ErrServerUnproven", tc.name, body, err)
		}
		if sawToken.Load() {
			t.Errorf("%s: the check sent the token", tc.name)
		}
	}
}

// holderHeader is a check answering "x@v" with the headers set sets; it
// returns its port.
func holderHeader(t *testing.T, set func(r *http.Request, h http.Header)) int {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set(r, w.Header())
		_, _ = io.WriteString(w, "x@v")
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().(*net.TCPAddr).Port
}
