package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/metrics"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/peer"
)

func clusterAPI(t *testing.T, tasks *MockTasks, c ClusterCDN, view ClusterView) *httptest.Server {
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := httptest.NewServer(NewAPI(Deps{Tasks: tasks, Peers: peer.New(nil, nil), Metrics: metrics.New(), Log: log,
		ClusterCDN: c, Cluster: view}))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// A member asking for a task this supernode is itself reading from a
// member, or whose fill waits here for the asker's own fill, is told to
// read the origin (code 409); one whose fill waits for a slot here is told
// so (CodeClusterFillWaits), so the asker waits without a slot; any other
// ask makes the task exist here without routing it again, then streams it.
func TestClusterFetchRoute(t *testing.T) {
	ctrl := gomock.NewController(t)
	tasks, c := NewMockTasks(ctrl), NewMockClusterCDN(ctrl)
	srv := clusterAPI(t, tasks, c, nil)
	body := `{"taskId":"t1","rawUrl":"http://origin/f","from":"10.0.0.2:8002"}`

	c.EXPECT().MemberOf("t1").Return("10.0.0.2:8002")
	resp, msg := post(t, srv.URL+types.ClusterFetchPath, body)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(msg, "read the origin") {
		t.Fatalf("fetch of a task read from a member: %d %s", resp.StatusCode, msg)
	}

	// An asker that predates keep-alive frames gets none; one that asks
	// for them gets them at the interval it asked for.
	for _, tc := range []struct {
		body      string
		keepAlive time.Duration
	}{
		{body, 0},
		{strings.Replace(body, "{", `{"keepAliveMs":500,`, 1), 500 * time.Millisecond},
	} {
		c.EXPECT().MemberOf("t1").Return("")
		tasks.EXPECT().EnsureLocal(cdn.Source{RawURL: "http://origin/f"}).Return("t1", nil)
		tasks.EXPECT().Info("t1").Return(types.TaskInfo{ID: "t1", HTTPFileLength: 42, PieceSize: 4 << 20}, nil)
		c.EXPECT().Waiting("t1").Return(false)
		c.EXPECT().Validators("t1").Return(http.Header{"Etag": {`"v1"`}})
		c.EXPECT().ServeMember(gomock.Any(), "t1", gomock.Any(), gomock.Any(), tc.keepAlive).DoAndReturn(
			func(_ any, _ string, w io.Writer, flush func() error, _ time.Duration) error {
				_, _ = w.Write([]byte("frames"))
				return flush()
			})
		resp, msg = post(t, srv.URL+types.ClusterFetchPath, tc.body)
		if resp.StatusCode != http.StatusOK || msg != "frames" || resp.Header.Get(types.ClusterHeaderTaskID) != "t1" ||
			resp.Header.Get(types.ClusterHeaderFileLength) != "42" || resp.Header.Get("ETag") != `"v1"` {
			t.Fatalf("fetch: %d %q %v", resp.StatusCode, msg, resp.Header)
		}
	}

	// A task whose fill waits for its turn here is refused too: the
	// asker's fill holds a slot on its own supernode meanwhile, and is
	// told to give it back and wait.
	c.EXPECT().MemberOf("t1").Return("")
	tasks.EXPECT().EnsureLocal(gomock.Any()).Return("t1", nil)
	tasks.EXPECT().Info("t1").Return(types.TaskInfo{ID: "t1", HTTPFileLength: -1, PieceSize: 4 << 20}, nil)
	c.EXPECT().Waiting("t1").Return(true)
	resp, msg = post(t, srv.URL+types.ClusterFetchPath, body)
	var e types.ErrorResponse
	if resp.StatusCode != http.StatusConflict || json.Unmarshal([]byte(msg), &e) != nil || e.Code != types.CodeClusterFillWaits ||
		!strings.Contains(e.Message, "waits for a slot") {
		t.Fatalf("fetch of a task whose fill waits: %d %s", resp.StatusCode, msg)
	}

	// Whose fill here waits for the asker's own: each takes the other for
	// the home, and the asker reads the origin.
	c.EXPECT().MemberOf("t1").Return("10.0.0.2:8002")
	resp, msg = post(t, srv.URL+types.ClusterFetchPath, body)
	if resp.StatusCode != http.StatusConflict || json.Unmarshal([]byte(msg), &e) != nil || e.Code != http.StatusConflict ||
		!strings.Contains(e.Message, "read the origin") {
		t.Fatalf("fetch of a task whose fill waits for the asker's: %d %s", resp.StatusCode, msg)
	}

	c.EXPECT().MemberOf("t2").Return("")
	tasks.EXPECT().EnsureLocal(gomock.Any()).Return("t1", nil)
	tasks.EXPECT().Info("t1").Return(types.TaskInfo{ID: "t1"}, nil)
	if resp, _ = post(t, srv.URL+types.ClusterFetchPath, `{"taskId":"t2","rawUrl":"http://origin/f"}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("fetch under another task's ID: %d", resp.StatusCode)
	}
	if resp, _ = post(t, srv.URL+types.ClusterFetchPath, `{`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad body: %d", resp.StatusCode)
	}
}

func TestClusterInfoRoute(t *testing.T) {
	ctrl := gomock.NewController(t)
	one := NewMockClusterView(ctrl)
	one.EXPECT().Info().Return(types.ClusterInfo{Self: "a:1", Members: []types.ClusterMember{{ID: "a:1", Self: true, Alive: true}}})
	for _, view := range []ClusterView{nil, one} {
		srv := clusterAPI(t, NewMockTasks(ctrl), nil, view)
		resp, err := http.Get(srv.URL + "/api/v1/cluster")
		if err != nil {
			t.Fatal(err)
		}
		var info types.ClusterInfo
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || info.Members == nil || (view != nil) != (len(info.Members) == 1) {
			t.Fatalf("cluster info %d %+v %v", resp.StatusCode, info, err)
		}
	}
}

// A member's stream, which lasts as long as its fill, ends when the
// supernode shuts down (Closing), so it does not hold the API server's
// shutdown: the asker gets an error frame and reads the origin.
func TestClusterFetchEndsOnClosing(t *testing.T) {
	ctrl := gomock.NewController(t)
	tasks, c := NewMockTasks(ctrl), NewMockClusterCDN(ctrl)
	log := logrus.New()
	log.SetOutput(io.Discard)
	closing := make(chan struct{})
	srv := httptest.NewServer(NewAPI(Deps{Tasks: tasks, Peers: peer.New(nil, nil), Metrics: metrics.New(), Log: log,
		ClusterCDN: c, Closing: closing}))
	t.Cleanup(srv.Close)
	c.EXPECT().MemberOf("t1").Return("")
	tasks.EXPECT().EnsureLocal(gomock.Any()).Return("t1", nil)
	tasks.EXPECT().Info("t1").Return(types.TaskInfo{ID: "t1", HTTPFileLength: 42, PieceSize: 4 << 20}, nil)
	c.EXPECT().Waiting("t1").Return(false)
	c.EXPECT().Validators("t1").Return(nil)
	serving := make(chan struct{})
	c.EXPECT().ServeMember(gomock.Any(), "t1", gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
		func(ctx context.Context, _ string, w io.Writer, flush func() error, _ time.Duration) error {
			close(serving)
			<-ctx.Done() // a fill that goes on
			_, _ = w.Write([]byte("error frame"))
			return flush()
		})
	// Cancelled first at cleanup: a stream that never ended would hold
	// srv.Close.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ended := make(chan string, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+types.ClusterFetchPath,
			strings.NewReader(`{"taskId":"t1","rawUrl":"http://origin/f"}`))
		if err != nil {
			ended <- err.Error()
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ended <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ended <- string(b)
	}()
	<-serving
	close(closing)
	select {
	case got := <-ended:
		if got != "error frame" {
			t.Fatalf("stream: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end at shutdown")
	}
}
