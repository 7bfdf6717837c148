package swarm

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/pkg/fwdbody/fwdbodytest"
)

// A forwarded request (a registry push through the mirror, say) whose
// source answers as soon as it has the body: the transport's read past
// the body's length comes after the response started, when net/http has
// closed the client's body. That read must not fail, or the transport
// drops the source connection and the client gets a cut response.
// fwdbodytest.LateBodyTransport holds that read until the client has the response
// headers, which makes the race certain.
func TestForwardBodyOutlivesResponseStart(t *testing.T) {
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Write(payload)
	}))
	defer origin.Close()
	s := newTestSwarm(t)
	tr := fwdbodytest.New(&http.Transport{})
	defer tr.CloseIdleConnections()
	t.Cleanup(tr.Open)
	src := Source{URL: mustURL(t, origin.URL+"/v2/x/blobs/uploads/1")}
	s.clients[fmt.Sprint(src.Insecure, src.CACerts)] = &http.Client{Transport: tr} // the client Forward uses
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.Forward(w, r, src) }))
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/octet-stream", strings.NewReader("up"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tr.Open()
	if err := <-tr.Late; err != io.EOF {
		t.Errorf("the transport's read of the request body after the response started: %v, want EOF", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("response through Forward: %d of %d bytes, %v", len(got), len(payload), err)
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
