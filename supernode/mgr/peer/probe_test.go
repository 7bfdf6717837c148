package peer

import (
	"io"
	"net"
	"testing"

	"github.com/sirupsen/logrus"
	"go.uber.org/mock/gomock"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// A probe of a peer a client failed to fetch from marks it down when its
// server refuses the connection; a server that still accepts is left to
// the failure counts.
func TestProbe(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	for _, tc := range []struct {
		name string
		port int
		down bool
	}{
		{"refused", deadPort, true},
		{"accepting", live.Addr().(*net.TCPAddr).Port, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl := gomock.NewController(t)
			dir, down := New(nil, nil), NewMockDowner(ctrl)
			id, err := dir.Register(types.PeerCreateRequest{IP: "127.0.0.1", HostName: "h", Port: tc.port})
			if err != nil {
				t.Fatal(err)
			}
			if tc.down {
				down.EXPECT().PeerDown(id)
			}
			p := NewProber(dir, down, log)
			p.Probe(id)
			p.Wait()
		})
	}
}
