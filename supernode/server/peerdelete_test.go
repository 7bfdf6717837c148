package server

import (
	"errors"
	"testing"
)

// DELETE /api/v1/peers/{id} goes through the GC, as the peer GC does:
// deleting the record alone left the peer a holder no client could be
// pointed at, picked for its pieces every time.
func TestDeletePeerGoesThroughGC(t *testing.T) {
	f := newFixture(t)
	f.gc.EXPECT().DeletePeer("p1").Return(nil)
	if st, body := f.do(t, "DELETE", "/api/v1/peers/p1", "", ""); st != 200 {
		t.Fatalf("delete peer: %d %s", st, body)
	}
	f.gc.EXPECT().DeletePeer("nope").Return(errors.New("peer not found: nope"))
	if st, body := f.do(t, "DELETE", "/api/v1/peers/nope", "", ""); st != 500 || body != `{"code":500,"message":"peer not found: nope"}` {
		t.Fatalf("unknown peer: %d %s", st, body)
	}
}
