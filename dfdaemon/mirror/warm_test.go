package mirror

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/dfdaemon/swarm"
)

func digestOf(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

func TestManifestBlobs(t *testing.T) {
	l1, l2, cfg := digestOf('1'), digestOf('2'), digestOf('c')
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"oci", `{"config":{"digest":"` + cfg + `"},"layers":[{"digest":"` + l1 + `"},{"digest":"` + l2 + `"},{"digest":"` + l1 + `"}]}`,
			[]string{l1, l2, cfg}},
		{"schema1", `{"fsLayers":[{"blobSum":"` + l2 + `"},{"blobSum":"` + l1 + `"}]}`, []string{l2, l1}},
		{"other digests", `{"layers":[{"digest":"sha512:ab"},{"digest":"sha256:XYZ"}]}`, nil},
		{"not json", `<html>`, nil},
	} {
		if got := manifestBlobs([]byte(tc.body)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// manifestMirror is a mirror whose forwarded answer to every request is
// status, contentType and body.
func manifestMirror(t *testing.T, sw *MockSwarm, status int, contentType, body string) *Mirror {
	remote, _ := url.Parse("https://registry.example:5000/prefix")
	sw.EXPECT().Forward(gomock.Any(), gomock.Any(), gomock.Any()).
		Do(func(w http.ResponseWriter, _ *http.Request, _ swarm.Source) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		})
	return &Mirror{Remote: remote, Swarm: sw}
}

func TestManifestWarmsItsBlobsInOrder(t *testing.T) {
	l1, l2, cfg := digestOf('1'), digestOf('2'), digestOf('c')
	body := `{"schemaVersion":2,"config":{"digest":"` + cfg + `"},"layers":[{"digest":"` + l1 + `"},{"digest":"` + l2 + `"}]}`
	ctrl := gomock.NewController(t)
	sw := NewMockSwarm(ctrl)
	m := manifestMirror(t, sw, http.StatusOK, "application/vnd.oci.image.manifest.v1+json", body)
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	sw.EXPECT().Warm(gomock.Any(), gomock.Any(), gomock.Any(), gomock.Any()).Times(3).
		Do(func(_ context.Context, r *http.Request, src swarm.Source, id swarm.Identity) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				t.Errorf("warm without the client's Authorization")
			}
			want := "https://registry.example:5000/prefix/v2/lib/app/blobs/" + id.Digest
			if src.URL.String() != want {
				t.Errorf("warm source %s, want %s", src.URL, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if got = append(got, id.Digest); len(got) == 3 {
				close(done)
			}
		})
	req := httptest.NewRequest(http.MethodGet, "/v2/lib/app/manifests/v1", nil)
	req.Header.Set("Authorization", "Bearer tok")
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, req)
	if rec.Body.String() != body {
		t.Fatalf("the client got %q, want the manifest as forwarded", rec.Body.String())
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("blobs not warmed")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []string{l1, l2, cfg}) {
		t.Fatalf("warmed %v, want the layers then the config, in order", got)
	}
}

func TestNoWarmForOtherAnswers(t *testing.T) {
	body := `{"layers":[{"digest":"` + digestOf('1') + `"}]}`
	for _, tc := range []struct {
		name, path, ctype string
		status            int
	}{
		{"401", "/v2/x/manifests/v1", "application/vnd.oci.image.manifest.v1+json", http.StatusUnauthorized},
		{"index", "/v2/x/manifests/v1", "application/vnd.oci.image.index.v1+json", http.StatusOK},
		{"tags", "/v2/x/tags/list", "application/vnd.oci.image.manifest.v1+json", http.StatusOK},
	} {
		ctrl := gomock.NewController(t)
		sw := NewMockSwarm(ctrl) // no Warm expected: a call fails the test
		m := manifestMirror(t, sw, tc.status, tc.ctype, body)
		m.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, tc.path, nil))
		ctrl.Finish()
	}
}
