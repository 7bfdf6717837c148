package pieceerror

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
)

// A report as a client from another address than the one it registered
// from is refused as a stranger's is (same error, same text) and queues
// nothing, so it neither reaches the cache check nor spends the client's
// one report per hold; from the client's own address it is queued.
func TestReportBoundToRegistrationAddress(t *testing.T) {
	owner, other := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	clients := dfgettask.New(dfgettask.Config{SuperPID: "super"}, dfgettask.Metrics{})
	if err := clients.Add(dfgettask.Task{CID: "c", TaskID: "t", PeerID: "p", Path: "/peer/file/c", Addr: owner}); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := New(Config{SuperPID: "super"}, clients, nil, nil, nil, log)
	req := types.PieceErrorRequest{TaskID: "t", SrcCid: "c", DstPid: "super", ErrorType: types.PieceErrorFileNotExist}
	err := m.Report(req, other)
	stranger := req
	stranger.SrcCid = "nobody"
	unknown := m.Report(stranger, other)
	if !errors.Is(err, ErrUnknownClient) || strings.Replace(err.Error(), "client c ", "client nobody ", 1) != unknown.Error() {
		t.Fatalf("report from %s: %v, want a stranger's answer: %v", other, err, unknown)
	}
	var fe *dfgettask.ForeignError
	if !errors.As(err, &fe) || fe.Bound != owner || fe.From != other {
		t.Fatalf("report from %s: %v does not carry the two addresses", other, err)
	}
	if n := len(m.queue); n != 0 {
		t.Fatalf("%d reports queued from %s", n, other)
	}
	if err := m.Report(req, owner); err != nil || len(m.queue) != 1 {
		t.Fatalf("report from %s: %v, %d queued", owner, err, len(m.queue))
	}
}
