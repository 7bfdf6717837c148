package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/piece"
)

// echoNode answers every supernode call with the body the fuzzer chose:
// for /peer/task the taskId query, for /peer/registry the rawUrl of the
// posted request. It lets the fuzzer drive the reply decoders over HTTP.
func echoNode(f *testing.F) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		body := r.URL.Query().Get("taskId")
		if r.URL.Path == "/peer/registry" {
			var req types.RegisterRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			body = req.RawURL
			if strings.HasPrefix(body, "E") {
				status = http.StatusInternalServerError
			}
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	f.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// FuzzSupernodeReplies: any reply body to /peer/registry and /peer/task
// is decoded into a result or an error, never a panic; an accepted
// registration always has a task ID and a piece size that carries content
// and is at most piece.MaxSize.
func FuzzSupernodeReplies(f *testing.F) {
	node := echoNode(f)
	f.Add(`{"code":200,"data":{"taskId":"t","fileLength":10,"pieceSize":4194304}}`)
	f.Add(`{"code":601,"data":[{"pieceRange":"0-4194303","pieceNum":0}]}`)
	f.Add(`E{"code":607,"message":"source 404"}`)
	f.Add(`{"code":200,"data":{"taskId":"","pieceSize":-1}}`)
	f.Add(`{"code":600,"data":"x"}`)
	f.Add(`{"code":200,"data":{"taskId":"t","fileLength":10,"pieceSize":5}}`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, body string) {
		c := New()
		ctx := context.Background()
		if d, err := c.Register(ctx, node, &types.RegisterRequest{RawURL: body}); err == nil && (d.TaskID == "" || d.PieceSize <= piece.WrapSize || d.PieceSize > piece.MaxSize) {
			t.Fatalf("accepted registration %+v", d)
		}
		_, _ = c.PullPieceTask(ctx, node, PullRequest{TaskID: body})
	})
}
