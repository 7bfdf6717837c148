package swarm

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
)

// fakeSupernode answers the calls a warm makes: the registration, the
// service-down and the task info, RUNNING for the first polls.
type fakeSupernode struct {
	mu       sync.Mutex
	regs     []types.RegisterRequest
	downs    []string
	polls    int
	running  int // polls answered RUNNING before SUCCESS
	taskAuth string
}

func (f *fakeSupernode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/peer/registry":
		var req types.RegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.regs = append(f.regs, req)
		_ = json.NewEncoder(w).Encode(map[string]any{"code": 200, "data": types.RegisterResponseData{TaskID: "t1", FileLength: 5, PieceSize: 4 << 20}})
	case r.URL.Path == "/peer/service/down":
		f.downs = append(f.downs, r.URL.Query().Get("cid"))
		_ = json.NewEncoder(w).Encode(map[string]any{"code": types.CodeGetPeerDown})
	case r.URL.Path == "/api/v1/tasks/t1":
		f.polls++
		st := types.CDNStatusSuccess
		if f.polls <= f.running {
			st = types.CDNStatusRunning
		}
		_ = json.NewEncoder(w).Encode(types.TaskInfo{ID: "t1", CdnStatus: st})
	default:
		// StreamSupported probes and anything else: not found.
		http.NotFound(w, r)
	}
}

// warmSwarm is a swarm whose supernode is sn.
func warmSwarm(t *testing.T, sn *httptest.Server) *Swarm {
	u, _ := url.Parse(sn.URL)
	var n nodes.List
	if err := n.Set(u.Host); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(tlogWriter{t})
	return New(Options{Nodes: n, Home: t.TempDir(), IP: "127.0.0.1",
		ServerExecutable: "/bin/false", Log: log})
}

func TestWarmRegistersAsCDNPatternAndWaitsForTheFill(t *testing.T) {
	body := []byte("hello")
	d := sum(body)
	var heads int
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead || r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("origin got %s with Authorization %q, want a HEAD with the client's", r.Method, r.Header.Get("Authorization"))
		}
		heads++
		w.Header().Set("Content-Length", "5")
	}))
	defer origin.Close()
	f := &fakeSupernode{running: 2}
	sn := httptest.NewServer(f)
	defer sn.Close()
	s := warmSwarm(t, sn)
	r := httptest.NewRequest(http.MethodGet, "/v2/x/manifests/v1", nil)
	r.Header.Set("Authorization", "Bearer tok")
	u, _ := url.Parse(origin.URL + "/v2/x/blobs/" + d)
	s.Warm(context.Background(), r, Source{URL: u}, Identity{Digest: d})
	s.Warm(context.Background(), r, Source{URL: u}, Identity{Digest: d}) // remembered: no second fill
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.regs) != 1 || heads != 1 {
		t.Fatalf("%d registrations, %d HEADs; want 1 each", len(f.regs), heads)
	}
	reg := f.regs[0]
	if reg.Port != 0 || reg.Pattern != "cdn" || reg.StreamMode || reg.Identifier != d ||
		reg.TaskURL != "https://"+taskURLHost+"/sha256/"+strings.TrimPrefix(d, "sha256:") || reg.RawURL != u.String() {
		t.Fatalf("registration %+v: want the blob's content-addressed task, cdn pattern, port 0, no stream", reg)
	}
	if len(f.downs) != 1 || f.downs[0] != reg.CID {
		t.Fatalf("service-down for %v, want only the warm client %s", f.downs, reg.CID)
	}
	if f.polls != 3 {
		t.Fatalf("%d task polls, want 3 (two RUNNING, then SUCCESS)", f.polls)
	}
	if n := value(s.m.Warmed); n != 1 {
		t.Fatalf("warmed_total %v, want 1", n)
	}
}

func TestWarmSkipsWhatTheSourceRefuses(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	}))
	defer origin.Close()
	f := &fakeSupernode{}
	sn := httptest.NewServer(f)
	defer sn.Close()
	s := warmSwarm(t, sn)
	d := sum([]byte("x"))
	u, _ := url.Parse(origin.URL + "/v2/x/blobs/" + d)
	s.Warm(context.Background(), httptest.NewRequest(http.MethodGet, "/", nil), Source{URL: u}, Identity{Digest: d})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.regs) != 0 {
		t.Fatalf("%d registrations for a blob the client may not read, want none", len(f.regs))
	}
	if _, ok := s.warmed[d]; ok {
		t.Fatal("a failed warm stays remembered: the blob would never be warmed")
	}
}

// tlogWriter sends the swarm's log to the test's.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
