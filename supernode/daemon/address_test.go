package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// calls drives a running supernode's API handler as if from several hosts.
type calls struct {
	t *testing.T
	d *Daemon
}

// do makes a call from address from (an IP) and returns its status and body.
func (c calls) do(from, method, target, body string) (int, string) {
	c.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = from + ":40000"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	c.d.api.Handler.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSuffix(rec.Body.String(), "\n")
}

// metric is the value of the series of /metrics starting with series.
func (c calls) metric(series string) string {
	c.t.Helper()
	_, text := c.do("127.0.0.1", "GET", "/metrics", "")
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return "absent"
}

// startWithOrigin runs a supernode configured by bind and registers client
// c1 from 198.18.0.1 for a 100-byte file on a local origin. It returns
// the supernode, once the file is cached, the task's ID and the
// registration's body.
func startWithOrigin(t *testing.T, bind bool) (calls, string, string) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("d", 100))
	}))
	t.Cleanup(origin.Close)
	cfg := testConfig(t)
	cfg.Base.SourceAllow, cfg.Base.BindClientAddress = []string{"127.0.0.1"}, bind
	d, err := New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	c := calls{t: t, d: d}
	register := `{"rawUrl":"` + origin.URL + `/f","cid":"c1","port":15001,"path":"/peer/file/c1","hostName":"h1"}`
	st, body := c.do("198.18.0.1", "POST", "/peer/registry", register)
	var reg struct{ Data types.RegisterResponseData }
	if err := json.Unmarshal([]byte(body), &reg); st != 200 || err != nil || reg.Data.TaskID == "" {
		t.Fatalf("register c1: HTTP %d %s", st, body)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if s, err := d.tasks.Wait(wctx, reg.Data.TaskID); err != nil || s != types.CDNStatusSuccess {
		t.Fatalf("cdn: %s %v", s, err)
	}
	return c, reg.Data.TaskID, register
}

// asCID are the calls that act as a client, on piece 0 of task id.
func asCID(id string) []struct{ method, target string } {
	q := "taskId=" + id + "&dstCid=" + url.QueryEscape(types.SuperNodeCIDPrefix+"127.0.0.1~"+id)
	return []struct{ method, target string }{
		{"GET", "/peer/task?" + q + "&status=700&srcCid="},
		{"GET", "/peer/piece/suc?" + q + "&pieceRange=0-104&cid="},
		{"GET", "/peer/piece/error?" + q + "&errorType=FILE_NOT_EXIST&srcCid="},
		{"GET", "/peer/service/down?" + q + "&cid="},
	}
}

// The whole supernode: client c1 registered from 198.18.0.1, then its
// pull, piece success, piece error and service-down sent from 198.18.0.2
// are answered exactly as calls of an unknown client and counted, and
// change nothing: c1's status stays WAITING and its own first pull from
// 198.18.0.1 is offered piece 0, which the stranger reported as had. A
// registration of c1 from 198.18.0.2 is refused.
func TestClientBoundToRegistrationAddress(t *testing.T) {
	c, id, register := startWithOrigin(t, true)
	for _, call := range asCID(id) {
		st, body := c.do("198.18.0.2", call.method, call.target+"c1", "")
		unknownSt, unknown := c.do("198.18.0.2", call.method, call.target+"nobody", "")
		if st != unknownSt || strings.Replace(body, "client c1 ", "client nobody ", 1) != unknown {
			t.Errorf("%s from 198.18.0.2: HTTP %d %q, want an unknown client's HTTP %d %q", call.target, st, body, unknownSt, unknown)
		}
	}
	if got := c.metric("dragonfly_supernode_client_address_refused_total"); got != "4" {
		t.Errorf("refused calls counted: %s, want 4", got)
	}
	if st, body := c.do("198.18.0.2", "POST", "/peer/registry", register); st != 500 ||
		body != `{"code":500,"message":"client c1 of task `+id+` is registered from another address"}` {
		t.Errorf("c1 registering from 198.18.0.2: HTTP %d %s", st, body)
	}
	if got := c.metric(`dragonfly_supernode_dfgettasks{callsystem="",status="WAITING"}`); got != "1" {
		t.Errorf("WAITING dfget tasks: %s, want c1's", got)
	}
	if st, body := c.do("198.18.0.1", "GET", asCID(id)[0].target+"c1", ""); st != 200 ||
		!strings.HasPrefix(body, `{"code":601,"msg":"peer task go on","data":[{"range":"0-104","pieceNum":0,`) {
		t.Fatalf("c1's own pull: HTTP %d %s, want piece 0", st, body)
	}
}

// With --bind-client-address=false the same calls from 198.18.0.2 act as
// c1, as in Dragonfly 1.x.
func TestClientFromAnyAddress(t *testing.T) {
	c, id, _ := startWithOrigin(t, false)
	want := []string{`{"code":601,"msg":"peer task go on","data":[{"range":"0-104"`, `{"code":611}`, ``, `{"code":612}`}
	for i, call := range asCID(id) {
		if st, body := c.do("198.18.0.2", call.method, call.target+"c1", ""); st != 200 || !strings.HasPrefix(body, want[i]) {
			t.Errorf("%s from 198.18.0.2: HTTP %d %s, want %s", call.target, st, body, want[i])
		}
	}
	if got := c.metric("dragonfly_supernode_client_address_refused_total"); got != "0" {
		t.Errorf("refused calls counted: %s, want 0", got)
	}
}
