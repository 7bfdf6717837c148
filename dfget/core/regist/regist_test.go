package regist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/api"
	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
	"github.com/damselfly-p2p/damselfly/test/netfake"
)

// registry is a /peer/registry that records the bodies it gets and
// accepts them unless it refuses.
type registry struct {
	*httptest.Server
	refuse bool
	mu     sync.Mutex
	got    []types.RegisterRequest
	// noStream makes /peer/piece/stream a missing route (Dragonfly 1.x);
	// probes counts requests there.
	noStream bool
	probes   int
}

func newRegistry(t *testing.T, refuse bool) *registry {
	r := &registry{refuse: refuse}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/peer/piece/stream" {
			r.mu.Lock()
			r.probes++
			r.mu.Unlock()
			if r.noStream {
				http.NotFound(w, req)
				return
			}
			_ = json.NewEncoder(w).Encode(types.ResultInfo{Code: types.CodeParamError, Msg: "taskId required"})
			return
		}
		var body types.RegisterRequest
		_ = json.NewDecoder(req.Body).Decode(&body)
		r.mu.Lock()
		r.got = append(r.got, body)
		r.mu.Unlock()
		if r.refuse {
			_ = json.NewEncoder(w).Encode(types.ResultInfo{Code: types.CodeSystemError, Msg: "not today"})
			return
		}
		_ = json.NewEncoder(w).Encode(types.ResultInfo{Code: types.CodeSuccess,
			Data: types.RegisterResponseData{TaskID: "T", FileLength: 10, PieceSize: 4 << 20}})
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *registry) node(t *testing.T) nodes.Node {
	t.Helper()
	n, err := nodes.Parse(strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRegisterTriesNodesInOrder(t *testing.T) {
	down, up := newRegistry(t, true), newRegistry(t, false)
	cfg := config.New()
	cfg.URL = "http://origin/f"
	res, err := Register(context.Background(), api.New(), cfg, []nodes.Node{down.node(t), up.node(t)}, Request{CID: "c", IP: "127.0.0.1", Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Node != up.node(t).Addr() || res.Data.TaskID != "T" {
		t.Fatalf("registered at %s (task %q), want %s", res.Node, res.Data.TaskID, up.node(t).Addr())
	}
	if len(down.got) != 1 || len(up.got) != 1 {
		t.Fatalf("requests: refusing node %d, accepting node %d; want 1 and 1", len(down.got), len(up.got))
	}
	_, err = Register(context.Background(), api.New(), cfg, []nodes.Node{down.node(t)}, Request{CID: "c", IP: "127.0.0.1", Port: 1})
	if err == nil || !strings.Contains(err.Error(), "not today") {
		t.Fatalf("all nodes refusing: %v, want their reason", err)
	}
}

// The stream fields go only with --stream; startPiece never (a resumed
// stream has the pieces it wrote offered again, to check them).
func TestRegisterStreamFields(t *testing.T) {
	r := newRegistry(t, false)
	for _, stream := range []bool{false, true} {
		cfg := config.New()
		cfg.URL, cfg.Stream, cfg.WindowSize = "http://origin/f", stream, 5
		if _, err := Register(context.Background(), api.New(), cfg, []nodes.Node{r.node(t)},
			Request{CID: "c", IP: "127.0.0.1", Port: 1}); err != nil {
			t.Fatal(err)
		}
	}
	file, str := r.got[0], r.got[1]
	if file.StreamMode || file.WindowSize != 0 || file.StartPiece != 0 {
		t.Errorf("file mode sent stream fields: %+v", file)
	}
	if !str.StreamMode || str.WindowSize != 5 || str.StartPiece != 0 {
		t.Errorf("stream mode sent streamMode %v windowSize %d startPiece %d, want true 5 0", str.StreamMode, str.WindowSize, str.StartPiece)
	}
}

// A stream probes each node for stream support once before registering;
// a node without it (404) gets a cdn-pattern registration and the result
// says to open no stream cache. A file download probes nothing.
func TestRegisterStreamProbe(t *testing.T) {
	for _, noStream := range []bool{false, true} {
		r := newRegistry(t, false)
		r.noStream = noStream
		for _, stream := range []bool{false, true} {
			cfg := config.New()
			cfg.URL, cfg.Stream, cfg.WindowSize = "http://origin/f", stream, 5
			res, err := Register(context.Background(), api.New(), cfg, []nodes.Node{r.node(t)}, Request{CID: "c", IP: "127.0.0.1", Port: 15001})
			if err != nil {
				t.Fatal(err)
			}
			body := r.got[len(r.got)-1]
			cdn := stream && noStream
			if res.NoStreamCache != cdn || (body.Pattern == config.PatternCDN) != cdn {
				t.Errorf("noStream %v stream %v: NoStreamCache %v pattern %q", noStream, stream, res.NoStreamCache, body.Pattern)
			}
		}
		if r.probes != 1 {
			t.Errorf("noStream %v: %d probes, want 1 (the stream's)", noStream, r.probes)
		}
	}
}

// Every registration asks for BLAKE3 piece digests: both patterns, file
// and stream mode, and the cdn-pattern fallback of a stream.
func TestRegisterAsksForBlake3(t *testing.T) {
	for _, noStream := range []bool{false, true} {
		r := newRegistry(t, false)
		r.noStream = noStream
		for _, stream := range []bool{false, true} {
			for _, port := range []int{0, 15001} {
				cfg := config.New()
				cfg.URL, cfg.Stream, cfg.WindowSize = "http://origin/f", stream, 5
				if _, err := Register(context.Background(), api.New(), cfg, []nodes.Node{r.node(t)},
					Request{CID: "c", IP: "127.0.0.1", Port: port}); err != nil {
					t.Fatal(err)
				}
				if b := r.got[len(r.got)-1]; b.PieceDigest != "blake3" {
					t.Errorf("stream %v port %d pattern %q: pieceDigest %q, want blake3", stream, port, b.Pattern, b.PieceDigest)
				}
			}
		}
	}
}

type hosts map[string][]string

func (h hosts) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := h[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

// TestOrderMeetsAtHome: dfgets given the same supernodes in any order, by
// address or by one name with several addresses, try the same home first;
// the home is the one the supernode's task ID hashes to.
func TestOrderMeetsAtHome(t *testing.T) {
	byIP := []string{"198.18.0.1:8002", "198.18.0.2:8002", "198.18.0.3:8002"}
	dns := hosts{"snodes": {"198.18.0.3", "198.18.0.1", "198.18.0.2"}}
	homes := map[string]int{}
	for i := 0; i < 60; i++ {
		var firsts []string
		for _, list := range []string{strings.Join(byIP, ","), byIP[2] + "," + byIP[0] + "," + byIP[1], "snodes"} {
			cfg := config.New()
			cfg.URL = fmt.Sprintf("http://origin/f%d", i)
			if err := cfg.Nodes.Set(list); err != nil {
				t.Fatal(err)
			}
			order, warns := Order(context.Background(), cfg, nil, dns)
			if len(order) != 3 || len(warns) != 0 {
				t.Fatalf("%s: order %v, warnings %v", list, order, warns)
			}
			firsts = append(firsts, order[0].Addr())
		}
		if firsts[0] != firsts[1] || firsts[0] != firsts[2] {
			t.Fatalf("file %d: homes %v differ", i, firsts)
		}
		homes[firsts[0]]++
	}
	if len(homes) != 3 {
		t.Fatalf("60 files have homes %v, want all 3 nodes used", homes)
	}
}

func TestOrderRandomAndBadName(t *testing.T) {
	cfg := config.New()
	cfg.URL, cfg.NodeOrder = "http://origin/f", config.NodeOrderRandom
	if err := cfg.Nodes.Set("198.18.0.1,gone"); err != nil {
		t.Fatal(err)
	}
	order, warns := Order(context.Background(), cfg, nil, hosts{})
	if len(order) != 2 || len(warns) != 1 || !strings.Contains(warns[0].Error(), "gone") {
		t.Fatalf("order %v, warnings %v", order, warns)
	}
}

// TestRegisterSkipsASilentNodeWithinASecond: a listed supernode that never
// answers (down, its packets dropped) costs about a second, not the
// transport's dial timeout, when another node follows it.
func TestRegisterSkipsASilentNodeWithinASecond(t *testing.T) {
	up := newRegistry(t, false)
	silent, err := nodes.Parse(netfake.Silent(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.New()
	cfg.URL = "http://origin/f"
	start := time.Now()
	res, err := Register(context.Background(), api.New(), cfg, []nodes.Node{silent, up.node(t)}, Request{CID: "c", IP: "127.0.0.1", Port: 1})
	took := time.Since(start)
	if err != nil || res.Node != up.node(t).Addr() {
		t.Fatalf("registered at %v, err %v; want %s", res, err, up.node(t).Addr())
	}
	if took < 900*time.Millisecond || took > 2*time.Second {
		t.Fatalf("the silent node cost %v, want about a second", took)
	}
}

// A dfget that trusts its source otherwise than by default hashes, for its
// home, the task ID the supernode gives such a registration: its trust is
// part of it.
func TestTaskIDCountsTrust(t *testing.T) {
	cfg := config.New()
	cfg.URL = "https://origin/f"
	plain, _ := TaskID(cfg, nil)
	cas := [][]byte{[]byte("pem")}
	withCAs, _ := TaskID(cfg, cas)
	cfg.Insecure = true
	insecure, _ := TaskID(cfg, nil)
	if plain != taskid.ID(cfg.URL, "", "", nil) {
		t.Errorf("default trust: %s, not v1's ID", plain)
	}
	if want := (taskid.Trust{RootCAs: cas}).ID(cfg.URL, "", "", nil); withCAs != want {
		t.Errorf("with CAs: %s, want %s", withCAs, want)
	}
	if want := (taskid.Trust{Insecure: true}).ID(cfg.URL, "", "", nil); insecure != want {
		t.Errorf("insecure: %s, want %s", insecure, want)
	}
}
