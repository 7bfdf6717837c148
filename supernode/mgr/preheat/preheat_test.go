package preheat

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/cdn"
)

func newM(t *testing.T, tasks Tasks) *Manager {
	return newMC(t, tasks, Config{Timeout: 10 * time.Second})
}

func newMC(t *testing.T, tasks Tasks, cfg Config) *Manager {
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := New(tasks, http.DefaultClient, cfg, log)
	t.Cleanup(m.Close)
	return m
}

func waitStatus(t *testing.T, m *Manager, id string) types.PreheatInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		info, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status == types.PreheatSuccess || info.Status == types.PreheatFailed {
			return info
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("preheat did not finish")
	return types.PreheatInfo{}
}

func TestFilePreheat(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	m := newM(t, tasks)
	tasks.EXPECT().Ensure(cdn.Source{RawURL: "http://o/f?a=1&t=2", TaskURL: "http://o/f?a=1", Headers: map[string]string{"X-A": "b"}, Identifier: "i"}).
		Return("tid", nil)
	tasks.EXPECT().Wait(gomock.Any(), "tid").Return(types.CDNStatusSuccess, nil)
	id, existed, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/f?a=1&t=2", Filter: "t", Identifier: "i",
		Headers: map[string]string{"x-a": "b"}})
	if err != nil || existed {
		t.Fatalf("create: %v %v", err, existed)
	}
	if info := waitStatus(t, m, id); info.Status != types.PreheatSuccess || info.FinishTime.IsZero() {
		t.Fatalf("info %+v", info)
	}
	if _, existed, _ := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/f?a=1&t=2", Filter: "t", Identifier: "i",
		Headers: map[string]string{"x-a": "b"}}); !existed {
		t.Fatal("second create of the same preheat started again")
	}
	for _, bad := range []types.PreheatCreateRequest{{Type: "x", URL: "http://o/f"}, {Type: "file", URL: "ftp://o/f"},
		{Type: "image", URL: "http://o/f"}} {
		if _, _, err := m.Create(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	if !m.Delete(id) || m.Delete(id) {
		t.Fatal("delete")
	}
}

func TestFilePreheatFailure(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	m := newM(t, tasks)
	tasks.EXPECT().Ensure(gomock.Any()).Return("", errors.New("url is not reachable"))
	id, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/missing"})
	if err != nil {
		t.Fatal(err)
	}
	if info := waitStatus(t, m, id); info.Status != types.PreheatFailed || info.ErrorMsg == "" {
		t.Fatalf("info %+v", info)
	}
}

func TestImagePreheat(t *testing.T) {
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/token":
			_, _ = io.WriteString(w, `{"token":"tok"}`)
		case "/v2/lib/app/manifests/v1":
			if r.Header.Get("Authorization") != "Bearer tok" {
				// A lower-case scheme: it is case-insensitive (RFC 9110).
				w.Header().Set("WWW-Authenticate", `bearer realm="http://`+r.Host+`/token",service="reg",scope="repository:lib/app:pull"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, `{"schemaVersion":2,"layers":[{"digest":"sha256:aa"},{"digest":"sha256:bb"}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer reg.Close()
	tasks := NewMockTasks(gomock.NewController(t))
	// One slot: the image must not hold it while its layers wait for it.
	m := newMC(t, tasks, Config{Timeout: 10 * time.Second, Limit: 1})
	for _, d := range []string{"sha256:aa", "sha256:bb"} {
		u := reg.URL + "/v2/lib/app/blobs/" + d
		tasks.EXPECT().Ensure(cdn.Source{RawURL: u, TaskURL: u, Headers: map[string]string{}}).Return("task-"+d, nil)
		tasks.EXPECT().Wait(gomock.Any(), "task-"+d).Return(types.CDNStatusSuccess, nil)
	}
	id, _, err := m.Create(types.PreheatCreateRequest{Type: "image", URL: reg.URL + "/v2/lib/app/manifests/v1"})
	if err != nil {
		t.Fatal(err)
	}
	if info := waitStatus(t, m, id); info.Status != types.PreheatSuccess {
		t.Fatalf("image preheat %+v", info)
	}
	if l := m.List(); len(l) != 3 {
		t.Fatalf("want parent and 2 children, got %d", len(l))
	}
}
