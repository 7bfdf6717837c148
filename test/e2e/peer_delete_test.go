package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// peerIDAt is the ID of the one registered peer with address ip.
func peerIDAt(t *testing.T, sn *supernode, ip string) string {
	t.Helper()
	resp, err := httpc.Get(sn.apiURL + "/api/v1/peers")
	if err != nil {
		t.Fatalf("list peers: %v", err)
	}
	defer resp.Body.Close()
	var peers []types.PeerInfo
	if err := json.NewDecoder(resp.Body).Decode(&peers); err != nil {
		t.Fatalf("list peers: %v", err)
	}
	id := ""
	for _, p := range peers {
		if p.IP == ip {
			if id != "" {
				t.Fatalf("two peers at %s: %+v", ip, peers)
			}
			id = p.ID
		}
	}
	if id == "" {
		t.Fatalf("no peer at %s: %+v", ip, peers)
	}
	return id
}

// A peer deleted through DELETE /api/v1/peers/{id} stopped being a peer
// record only: it stayed the holder of its pieces, with no load, so it was
// picked for them every time, /peer/task could not point at it, spun a
// core for each long-poll and answered 602. A client never got those
// pieces from anyone. Now the peer goes as the peer GC drops one: its
// client of the task is gone too, and the next client gets the piece from
// the supernode at once.
func TestSupernodeDeletedPeerIsNoHolder(t *testing.T) {
	o := newOrigin(t)
	data := randomData(64<<10, 7)
	url := o.add("/deleted-holder.bin", data)
	sn := startSupernode(t, t.TempDir())
	holder := newFakeV1Peer(t, sn, "127.0.0.3", "holder-cid")
	holder.register(url)
	infos := holder.semiSucAll(time.Minute)
	if len(infos) != 1 {
		t.Fatalf("want one piece, got %d", len(infos))
	}
	holder.write(infos[0]) // the holder of piece 0, the only peer one

	id := peerIDAt(t, sn, "127.0.0.3")
	req, _ := http.NewRequest(http.MethodDelete, sn.apiURL+"/api/v1/peers/"+id, nil)
	resp, err := httpc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("delete peer %s: %v %v", id, resp, err)
	}
	resp.Body.Close()
	if r := holder.pull(types.TaskStatusStart, types.ResultInvalid, "", ""); r.Code != types.CodeTargetNotFound {
		t.Errorf("the deleted peer's client still pulls: %+v", r)
	}

	late := newClient(t, sn, "late-cid")
	late.register(late.registerReq(url))
	start := time.Now()
	got, _ := late.download(5 * time.Second)
	if !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	if _, served := holder.requests(); len(served) > 0 {
		t.Errorf("the deleted peer was asked for %v", served)
	}
	t.Logf("downloaded in %s after the holder's peer was deleted", time.Since(start))
}
