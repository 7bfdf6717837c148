package swarm

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"

	dfgetcfg "github.com/damselfly-p2p/damselfly/dfget/config"
)

// A download whose dfget configuration cannot be built is served from the
// source, as without a swarm, and says why in the log: never a bare 400
// for every blob.
func TestServeGETForwardsWhenTheDownloadCannotBeConfigured(t *testing.T) {
	body := bytes.Repeat([]byte("layer"), 1000)
	var auth atomic.Value
	origin := blobOrigin(t, body, &auth)
	var logged bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logged)
	// Options.Check refuses this IP at startup; a Swarm built without the
	// check stands for any error left at request time.
	s := New(Options{Nodes: closedNode(t), Home: t.TempDir(), IP: "300.1.1.1", ServerExecutable: "/bin/false",
		Log: log})
	srv := serve(t, s, origin.URL+"/v2/x/blobs/"+sum(body), Identity{Digest: sum(body)})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("%d, %d bytes, %v; want the source's 200 with the %d-byte blob", resp.StatusCode, len(got), err,
			len(body))
	}
	if n := value(s.m.Forwarded); n != 1 {
		t.Fatalf("%v forwarded, want 1", n)
	}
	if !strings.Contains(logged.String(), "300.1.1.1") {
		t.Fatalf("log %q does not say why the blob was forwarded", logged.String())
	}
}

func TestOptionsCheck(t *testing.T) {
	home := t.TempDir()
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"valid":               {Options{Home: home, IP: "10.0.0.1"}, ""},
		"no IP":               {Options{Home: home}, ""},
		"bad IP":              {Options{Home: home, IP: "notanip"}, "notanip"},
		"bad properties node": {Options{Home: home, Properties: dfgetcfg.Properties{Nodes: []string{"a:b:c"}}}, "nodes"},
		"missing node CA": {Options{Home: home, Properties: dfgetcfg.Properties{NodeCACerts: []string{home + "/none.pem"}}},
			"none.pem"},
	} {
		err := tc.o.Check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Check() = %v, want an error naming %q", name, err, tc.want)
		}
	}
}
