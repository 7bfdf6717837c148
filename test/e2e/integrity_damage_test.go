package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/apis/types"
)

// A cache damaged on disk after a fill that only BLAKE3 clients used (so
// no md5 was computed) is dropped when a Dragonfly 1.x client comes: the
// supernode finds the damage computing that client's piece md5, which it
// never offers, so the client never reports it; the supernode drops the
// task itself, and the next client gets the file, fetched again, right.
func TestIntegrityDamagedCacheDroppedForV1Client(t *testing.T) {
	o := newOrigin(t)
	data := randomData(3*(4<<20)+99, 1501)
	u := o.add("/damaged.bin", data)
	sn := startSupernode(t, t.TempDir())
	if got := digestDownload(t, sn, "127.0.0.1-b3-fill", u, true); !bytes.Equal(got, data) {
		t.Fatal("blake3 client: content differs")
	}

	c := newClient(t, sn, "127.0.0.1-v1-damaged")
	reg := c.register(c.registerReq(u))
	f, err := os.OpenFile(filepath.Join(sn.home, "repo", "download", reg.TaskID[:3], reg.TaskID), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The middle of piece 1: its header and tail stay as they were.
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xAA}, 4096), 4<<20+1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()

	Eventually(t, 20*time.Second, "the damaged task dropped", func() bool {
		r := c.pull(types.TaskStatusStart, types.ResultInvalid, "", "")
		for _, p := range c.pieces(r) {
			if p.PieceNum == 1 {
				t.Fatal("the damaged piece was offered")
			}
		}
		resp, err := httpc.Get(sn.apiURL + "/api/v1/tasks/" + reg.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// v1 answers an unknown task with a 500.
		return resp.StatusCode != http.StatusOK
	})

	c2 := newClient(t, sn, "127.0.0.1-v1-after")
	c2.register(c2.registerReq(u))
	got, fin := c2.download(time.Minute)
	if !bytes.Equal(got, data) || fin.Md5 != md5hex(data) {
		t.Fatal("download after the drop differs")
	}
	if n := o.count("/damaged.bin", http.StatusOK); n != 2 {
		t.Fatalf("the origin sent the file %d times, want 2 (the damaged cache fetched again)", n)
	}
}
