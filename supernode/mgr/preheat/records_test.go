package preheat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// registry serves a schema 2 manifest at /v2/lib/app/manifests/v1 with
// the given layer digests.
func registry(t *testing.T, digests ...string) string {
	var layers []string
	for _, d := range digests {
		layers = append(layers, `{"digest":"`+d+`"}`)
	}
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/lib/app/manifests/v1" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"schemaVersion":2,"layers":[`+strings.Join(layers, ",")+`]}`)
	}))
	t.Cleanup(reg.Close)
	return reg.URL
}

func records(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.jobs)
}

func TestFinishedPreheatExpires(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newMC(t, tasks, Config{Timeout: 10 * time.Second, Expire: time.Hour, Now: clock.Now})
	tasks.EXPECT().Ensure(gomock.Any()).Return("tid", nil).Times(2)
	tasks.EXPECT().Wait(gomock.Any(), "tid").Return(types.CDNStatusSuccess, nil).Times(2)
	req := types.PreheatCreateRequest{Type: "file", URL: "http://o/f"}
	id, _, err := m.Create(req)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, id)
	clock.add(time.Hour - time.Second)
	if _, err := m.Get(id); err != nil {
		t.Fatalf("expired early: %v", err)
	}
	if _, existed, _ := m.Create(req); !existed {
		t.Fatal("a live preheat was started again")
	}
	clock.add(time.Second)
	if _, err := m.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of an expired preheat: %v, want ErrNotFound", err)
	}
	if l := m.List(); len(l) != 0 {
		t.Fatalf("list shows expired preheats: %+v", l)
	}
	if again, existed, err := m.Create(req); err != nil || existed || again != id {
		t.Fatalf("create of an expired preheat: %s %v %v, want a new start", again, existed, err)
	}
	if info := waitStatus(t, m, id); info.Status != types.PreheatSuccess || !info.StartTime.Equal(clock.Now()) {
		t.Fatalf("restarted preheat %+v", info)
	}
}

// The manager's own loop removes expired records, layers with their image.
func TestExpiryLoopFreesRecords(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	m := newMC(t, tasks, Config{Timeout: 10 * time.Second, Expire: 50 * time.Millisecond})
	tasks.EXPECT().Ensure(gomock.Any()).Return("tid", nil).Times(3)
	tasks.EXPECT().Wait(gomock.Any(), "tid").Return(types.CDNStatusSuccess, nil).Times(3)
	if _, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/f"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Create(types.PreheatCreateRequest{Type: "image", URL: registry(t, "sha256:aa", "sha256:bb") + "/v2/lib/app/manifests/v1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for records(m) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d records still held after they expired", records(m))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blockingTasks lets the test end each CDN fill and counts the running ones.
type blockingTasks struct {
	mu      sync.Mutex
	running int
	most    int
	release chan struct{}
}

func (b *blockingTasks) wait(ctx context.Context, _ string) (string, error) {
	b.mu.Lock()
	b.running++
	b.most = max(b.most, b.running)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.running--
		b.mu.Unlock()
	}()
	select {
	case <-b.release:
		return types.CDNStatusSuccess, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func statuses(t *testing.T, m *Manager, ids []string) string {
	t.Helper()
	var out []string
	for _, id := range ids {
		info, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Status[:1])
	}
	return strings.Join(out, "")
}

// waitDone waits until done preheats succeeded, then checks that at most
// limit run and that they started in order: no waiting one before a
// started one.
func waitDone(t *testing.T, m *Manager, ids []string, done, limit int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	got := statuses(t, m, ids)
	for ; strings.Count(got, "S") != done; got = statuses(t, m, ids) {
		if time.Now().After(deadline) {
			t.Fatalf("statuses %s, want %d successes", got, done)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := strings.Count(got, "R"); r != min(limit, len(ids)-done) || strings.Contains(strings.TrimRight(got, "W"), "W") {
		t.Fatalf("statuses %s after %d successes: want %d running, then the waiting ones", got, done, min(limit, len(ids)-done))
	}
}

func TestRunningPreheatsBounded(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	m := newMC(t, tasks, Config{Timeout: 10 * time.Second, Limit: 2})
	b := &blockingTasks{release: make(chan struct{})}
	tasks.EXPECT().Ensure(gomock.Any()).Return("tid", nil).Times(5)
	tasks.EXPECT().Wait(gomock.Any(), "tid").DoAndReturn(b.wait).Times(5)
	var ids []string
	for i := range 5 {
		id, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: fmt.Sprintf("http://o/f%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// W(AITING), R(UNNING), S(UCCESS): the waiting ones start in order.
	if got := statuses(t, m, ids); got != "RRWWW" {
		t.Fatalf("statuses %s, want RRWWW", got)
	}
	for done := 1; done <= len(ids); done++ {
		b.release <- struct{}{}
		waitDone(t, m, ids, done, 2)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.most != 2 {
		t.Fatalf("%d CDN fills ran at once, want 2", b.most)
	}
}

func TestRecordsBounded(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	m := newMC(t, tasks, Config{Timeout: 10 * time.Second, MaxRecords: 2})
	tasks.EXPECT().Ensure(gomock.Any()).Return("", errors.New("unreachable")).AnyTimes()
	a, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/a"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/c"}); !errors.Is(err, ErrFull) {
		t.Fatalf("third record: %v, want ErrFull", err)
	}
	waitStatus(t, m, a)
	// Re-creating a failed one replaces its record: no room needed.
	if _, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/a"}); err != nil {
		t.Fatalf("re-create of a failed preheat: %v", err)
	}
	m.Delete(a)
	if _, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: "http://o/c"}); err != nil {
		t.Fatalf("create after a delete: %v", err)
	}
	// An image whose layers do not fit fails without starting any.
	m.Delete(b)
	img, _, err := m.Create(types.PreheatCreateRequest{Type: "image", URL: registry(t, "sha256:aa", "sha256:bb") + "/v2/lib/app/manifests/v1"})
	if err != nil {
		t.Fatal(err)
	}
	if info := waitStatus(t, m, img); info.Status != types.PreheatFailed || !strings.Contains(info.ErrorMsg, ErrFull.Error()) {
		t.Fatalf("image beyond the record limit: %+v", info)
	}
}

// v1's list element: its PreheatTask struct encoded without JSON tags.
var v1PreheatTaskKeys = []string{"ID", "URL", "Type", "Filter", "Identifier", "Headers", "ParentID", "Children",
	"Status", "StartTime", "FinishTime", "ErrorMsg"}

func TestListShape(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	start := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	clock := &fakeClock{now: start}
	m := newMC(t, tasks, Config{Timeout: 10 * time.Second, Now: clock.Now})
	tasks.EXPECT().Ensure(gomock.Any()).DoAndReturn(func(any) (string, error) { clock.add(1500 * time.Millisecond); return "tid", nil }).Times(3)
	tasks.EXPECT().Wait(gomock.Any(), "tid").Return(types.CDNStatusSuccess, nil).Times(3)
	req := types.PreheatCreateRequest{Type: "file", URL: "http://u:pw@o/f?a=1&t=2", Filter: "t", Identifier: "i",
		Headers: map[string]string{"authorization": "Basic c2VjcmV0", "X-Api-Key": "k", "Cookie": "s=1", "X-A": "b"}}
	id, _, err := m.Create(req)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, id)
	img, _, err := m.Create(types.PreheatCreateRequest{Type: "image", URL: registry(t, "sha256:aa", "sha256:bb") + "/v2/lib/app/manifests/v1"})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, img)
	body, err := json.Marshal(m.List())
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil || len(list) != 4 {
		t.Fatalf("list %s: %v", body, err)
	}
	for _, e := range list {
		var keys []string
		for k := range e {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		want := append([]string(nil), v1PreheatTaskKeys...)
		sort.Strings(want)
		if !reflect.DeepEqual(keys, want) {
			t.Fatalf("keys %v, want v1's %v", keys, want)
		}
	}
	f := list[0]
	wantFile := map[string]any{"ID": id, "URL": "http://u:xxxxx@o/f?a=1&t=2", "Type": "file", "Filter": "t", "Identifier": "i",
		"Headers":  map[string]any{"Authorization": "xxxxx", "X-Api-Key": "xxxxx", "Cookie": "xxxxx", "X-A": "b"},
		"ParentID": "", "Children": nil, "Status": "SUCCESS",
		"StartTime": float64(start.UnixMilli()), "FinishTime": float64(start.Add(1500 * time.Millisecond).UnixMilli()), "ErrorMsg": ""}
	if !reflect.DeepEqual(f, wantFile) {
		t.Fatalf("file preheat\n got %v\nwant %v", f, wantFile)
	}
	var children []any
	for _, e := range list[1:] {
		if e["ID"] == img {
			children = e["Children"].([]any)
			if e["Type"] != "image" || e["ParentID"] != "" || e["Headers"] != nil || e["Status"] != "SUCCESS" {
				t.Fatalf("image %v", e)
			}
		} else if e["ParentID"] != img || e["Type"] != "file" || e["Children"] != nil {
			t.Fatalf("layer %v", e)
		}
	}
	if len(children) != 2 {
		t.Fatalf("image children %v", children)
	}
}

// Close ends the running preheat and the expiry loop; waiting ones are
// never started.
func TestCloseStartsNoWaitingPreheat(t *testing.T) {
	tasks := NewMockTasks(gomock.NewController(t))
	m := newMC(t, tasks, Config{Timeout: 10 * time.Second, Limit: 1})
	b := &blockingTasks{release: make(chan struct{})}
	tasks.EXPECT().Ensure(gomock.Any()).Return("tid", nil).Times(1)
	tasks.EXPECT().Wait(gomock.Any(), "tid").DoAndReturn(b.wait).Times(1)
	var ids []string
	for i := range 3 {
		id, _, err := m.Create(types.PreheatCreateRequest{Type: "file", URL: fmt.Sprintf("http://o/f%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if got := statuses(t, m, ids); got != "FWW" {
		t.Fatalf("statuses after Close %s, want FWW", got)
	}
}
