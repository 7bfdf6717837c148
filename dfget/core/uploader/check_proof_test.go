package uploader

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/version"
)

// headerLog records the headers of the requests a test server got.
type headerLog struct {
	mu  sync.Mutex
	got []http.Header
}

func (l *headerLog) add(h http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, h.Clone())
}

// leaked reports a header of any recorded request that carries tok.
func (l *headerLog) leaked(tok string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.got {
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, tok) {
					return k + ": " + v
				}
			}
		}
	}
	return ""
}

func (l *headerLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

// A server killed without its cleanup leaves host.meta naming its port,
// which another local user can then take. A listener there that answers
// the check as v1 servers do ("<name>@<version>"), even echoing the
// dfget's own MAC as its proof, is no server: StartOrReuse does not use
// it, and it never sees the token.
func TestStartOrReuseRefusesListenerOnDeadServersPort(t *testing.T) {
	for _, echo := range []bool{false, true} {
		var log headerLog
		imp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.add(r.Header)
			if echo {
				w.Header().Set(api.HeaderCheckProof, r.Header.Get(api.HeaderCheckAuth))
			}
			_, _ = io.WriteString(w, strings.TrimPrefix(r.URL.Path, "/check/")+"@"+version.Version)
		}))
		port := imp.Listener.Addr().(*net.TCPAddr).Port
		dir := t.TempDir()
		meta := filepath.Join(dir, "meta", "host.meta")
		if err := os.MkdirAll(filepath.Dir(meta), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := WriteMeta(meta, types.HostMeta{ServicePort: port, Token: "secret-of-dead-server"}); err != nil {
			t.Fatal(err)
		}
		got, err := StartOrReuse(context.Background(), api.New(), SpawnOptions{IP: "127.0.0.1", MetaPath: meta,
			DataDir: filepath.Join(dir, "data"), TaskFileName: "f-1", Executable: "/bin/false", LogPath: filepath.Join(dir, "l")})
		imp.Close()
		if err == nil && got == port {
			t.Errorf("echo %v: the listener on port %d was taken for the peer server", echo, got)
		}
		if log.count() == 0 {
			t.Errorf("echo %v: the listener was never checked", echo)
		}
		if h := log.leaked("secret-of-dead-server"); h != "" {
			t.Errorf("echo %v: the listener got the token in %q", echo, h)
		}
	}
}

// A host.meta without a token (a server of an old version, or anything
// else on the port) cannot be proven: not reused, even with the version.
func TestCheckDoesNotReuseServerWithoutToken(t *testing.T) {
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "x@"+version.Version)
	}))
	defer old.Close()
	meta := filepath.Join(t.TempDir(), "host.meta")
	if err := os.WriteFile(meta, []byte(`{"servicePort":`+strconv.Itoa(old.Listener.Addr().(*net.TCPAddr).Port)+`}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := check(context.Background(), api.New(), SpawnOptions{IP: "127.0.0.1", MetaPath: meta, TaskFileName: "x"}); ok {
		t.Fatal("a listener without a token in host.meta was reused")
	}
}

// The real server passes the check, which carries no token; the calls
// after it do.
func TestCheckProvesServerWithoutSendingToken(t *testing.T) {
	s, dir := newTestServer(t)
	var log headerLog
	h := s.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/check/") {
			log.add(r.Header)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	meta := filepath.Join(t.TempDir(), "host.meta")
	if err := WriteMeta(meta, types.HostMeta{ServicePort: port, Token: testToken}); err != nil {
		t.Fatal(err)
	}
	c := api.New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p, ok, _ := check(ctx, c, SpawnOptions{IP: "127.0.0.1", MetaPath: meta, DataDir: dir, TaskFileName: "x"}); !ok || p != port {
		t.Fatalf("check of the real server: port %d ok %v", p, ok)
	}
	if log.count() != 1 {
		t.Fatalf("%d checks", log.count())
	}
	if h := log.leaked(testToken); h != "" {
		t.Errorf("the check sent the token in %q", h)
	}
	if _, err := c.FairRate(ctx, "127.0.0.1", port, "x", 10); err != nil {
		t.Errorf("a control call after the check: %v", err)
	}
}

// The check answers a nonce with its proof in a header, to a caller that
// shows the token or its MAC of the nonce; the body stays v1's.
func TestCheckAnswersNonceWithProof(t *testing.T) {
	s, dir := newTestServer(t)
	h := s.Handler()
	const nonce = "00112233445566778899aabbccddeeff"
	check := func(hdr map[string]string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest("GET", "/check/x", nil)
		r.RemoteAddr = "127.0.0.1:1"
		r.Header.Set(api.HeaderDataDir, dir)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for name, hdr := range map[string]map[string]string{
		"mac":   {api.HeaderCheckNonce: nonce, api.HeaderCheckAuth: api.CheckAuth(testToken, nonce)},
		"token": {api.HeaderCheckNonce: nonce, api.HeaderLocalToken: testToken},
	} {
		w := check(hdr)
		if w.Code != http.StatusOK || w.Body.String() != "x@"+version.Version {
			t.Errorf("%s: %d %q", name, w.Code, w.Body)
		}
		if got := w.Header().Get(api.HeaderCheckProof); got != api.CheckProof(testToken, nonce) {
			t.Errorf("%s: proof %q", name, got)
		}
	}
	if w := check(map[string]string{api.HeaderLocalToken: testToken}); w.Code != http.StatusOK ||
		w.Header().Get(api.HeaderCheckProof) != "" || w.Body.String() != "x@"+version.Version {
		t.Errorf("check without a nonce: %d %q, proof %q", w.Code, w.Body, w.Header().Get(api.HeaderCheckProof))
	}
	for name, hdr := range map[string]map[string]string{
		"wrong mac":    {api.HeaderCheckNonce: nonce, api.HeaderCheckAuth: api.CheckAuth("other", nonce)},
		"proof as mac": {api.HeaderCheckNonce: nonce, api.HeaderCheckAuth: api.CheckProof(testToken, nonce)},
		"short nonce":  {api.HeaderCheckNonce: "00", api.HeaderCheckAuth: api.CheckAuth(testToken, "00")},
		"nonce alone":  {api.HeaderCheckNonce: nonce},
	} {
		if w := check(hdr); w.Code != http.StatusForbidden || w.Header().Get(api.HeaderCheckProof) != "" {
			t.Errorf("%s: %d, proof %q", name, w.Code, w.Header().Get(api.HeaderCheckProof))
		}
	}
}

// A live server of ours that refuses the check (here a task file name
// over 255 bytes) is reported, not taken for "no server": spawning
// another would leave it running and take its host.meta, on every run.
func TestStartOrReuseDoesNotSpawnBesideRefusingServer(t *testing.T) {
	s, dir := newTestServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	meta := filepath.Join(t.TempDir(), "host.meta")
	if err := WriteMeta(meta, types.HostMeta{ServicePort: port, Token: testToken}); err != nil {
		t.Fatal(err)
	}
	spawned := filepath.Join(t.TempDir(), "spawned")
	exe := filepath.Join(t.TempDir(), "fake-dfget")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\ntouch '"+spawned+"'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := StartOrReuse(ctx, api.New(), SpawnOptions{IP: "127.0.0.1", MetaPath: meta, DataDir: dir,
		TaskFileName: strings.Repeat("n", 300), Executable: exe, LogPath: filepath.Join(t.TempDir(), "log")})
	if !errors.Is(err, api.ErrServerRefused) {
		t.Errorf("StartOrReuse: %v, want ErrServerRefused", err)
	}
	if _, serr := os.Stat(spawned); serr == nil {
		t.Error("a second peer server was spawned beside the live one")
	}
	if m := ReadMeta(meta); m.ServicePort != port || m.Token != testToken {
		t.Errorf("host.meta changed: %+v", m)
	}
}
