package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// supernodeRegisterWorst is the longest a supernode with the default
// sourceTimeout (10 s) may take to answer a registration: connect, TLS
// handshake and headers of the origin, and a second request's headers
// (see registerTimeout).
const supernodeRegisterWorst = 40 * time.Second

// A registration waits longer for its answer than the supernode may take
// to get the origin's headers, and the transport does not cut it first.
func TestRegisterOutwaitsTheSupernode(t *testing.T) {
	if h := NewTransport().ResponseHeaderTimeout; h != 0 && h < supernodeRegisterWorst {
		t.Errorf("the transport waits %v for response headers, less than a registration may take (%v)", h, supernodeRegisterWorst)
	}
	rt := NewMockRoundTripper(gomock.NewController(t))
	var left time.Duration
	rt.EXPECT().RoundTrip(gomock.Any()).DoAndReturn(func(r *http.Request) (*http.Response, error) {
		if dl, ok := r.Context().Deadline(); ok {
			left = time.Until(dl)
		}
		body := `{"code":200,"data":{"taskId":"t","fileLength":10,"pieceSize":4194304}}`
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})
	c := &Client{HTTP: &http.Client{Transport: rt}}
	if _, err := c.Register(context.Background(), "node:8002", &types.RegisterRequest{}); err != nil {
		t.Fatal(err)
	}
	if left <= supernodeRegisterWorst {
		t.Errorf("registration gives the supernode %v, less than it may take (%v)", left.Round(time.Second), supernodeRegisterWorst)
	}
}
