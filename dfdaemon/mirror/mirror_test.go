package mirror

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/dfdaemon/swarm"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestRouting(t *testing.T) {
	remote, _ := url.Parse("https://registry.example:5000/prefix")
	for _, tc := range []struct {
		method, target string
		direct         bool
		swarm          bool
		upstream       string
	}{
		{"GET", "/v2/library/alpine/blobs/" + digest, false, true, "https://registry.example:5000/prefix/v2/library/alpine/blobs/" + digest},
		{"GET", "/v2/a/b/c/blobs/" + digest + "?ns=docker.io", false, true, "https://registry.example:5000/prefix/v2/a/b/c/blobs/" + digest + "?ns=docker.io"},
		{"HEAD", "/v2/library/alpine/blobs/" + digest, false, false, "https://registry.example:5000/prefix/v2/library/alpine/blobs/" + digest},
		{"GET", "/v2/library/alpine/blobs/" + digest, true, false, "https://registry.example:5000/prefix/v2/library/alpine/blobs/" + digest},
		{"GET", "/v2/library/alpine/blobs/sha512:abcd", false, false, "https://registry.example:5000/prefix/v2/library/alpine/blobs/sha512:abcd"},
		{"GET", "/v2/library/alpine/manifests/latest", false, false, "https://registry.example:5000/prefix/v2/library/alpine/manifests/latest"},
		{"GET", "/v2/", false, false, "https://registry.example:5000/prefix/v2/"},
		{"PUT", "/v2/x/blobs/uploads/1?digest=" + digest, false, false, "https://registry.example:5000/prefix/v2/x/blobs/uploads/1?digest=" + digest},
	} {
		ctrl := gomock.NewController(t)
		sw := NewMockSwarm(ctrl)
		m := &Mirror{Remote: remote, Direct: tc.direct, Insecure: true, Swarm: sw}
		check := func(src swarm.Source) {
			if src.URL.String() != tc.upstream || !src.Insecure {
				t.Errorf("%s %s: source %s (insecure %v), want %s", tc.method, tc.target, src.URL, src.Insecure, tc.upstream)
			}
		}
		if tc.swarm {
			sw.EXPECT().ServeGET(gomock.Any(), gomock.Any(), gomock.Any(), swarm.Identity{Digest: digest}).
				Do(func(_ http.ResponseWriter, _ *http.Request, src swarm.Source, _ swarm.Identity) { check(src) })
		} else {
			sw.EXPECT().Forward(gomock.Any(), gomock.Any(), gomock.Any()).
				Do(func(_ http.ResponseWriter, _ *http.Request, src swarm.Source) { check(src) })
		}
		m.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tc.method, tc.target, nil))
		ctrl.Finish()
	}
}
