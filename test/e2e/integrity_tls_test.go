package e2e

import (
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
)

// An HTTPS origin whose certificate no system root signs. A dfget with
// --insecure downloads it; one without must not then get those bytes,
// fetched unverified, from the task --insecure started (it used to, with
// exit 0): its registration is a task of its own, whose fetch fails the
// check, and so does its fallback. A dfget given the origin's CA
// (--cacerts) gets the file through its own task too.
func TestIntegrityInsecureTaskNotShared(t *testing.T) {
	o := newOrigin(t)
	ts := httptest.NewUnstartedServer(o.Config.Handler)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	ts.StartTLS()
	t.Cleanup(ts.Close)
	data := randomData(3<<20+5, 115)
	url := ts.URL + "/tls.bin"
	o.add("/tls.bin", data)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	sn := startSupernode(t, t.TempDir())
	out := t.TempDir()
	insecure := filepath.Join(out, "insecure")
	r := newDfgetPeer(t, "127.0.0.30").run(sn, "-u", url, "-o", insecure, "--insecure")
	if r.code != 0 {
		t.Fatalf("--insecure: exit %d\n%s", r.code, r.stdout)
	}
	fileEquals(t, insecure, data)
	// The --insecure run must have made the supernode task the verifying
	// dfget is then kept from: had it fallen back to the source, there
	// would be no task to share and the check below would prove nothing.
	if strings.Contains(r.stdout, "from the source station") {
		t.Fatalf("--insecure fell back to the source: no supernode task to keep from others\n%s", r.stdout)
	}
	id, err := taskid.Registration{RawURL: url, Trust: taskid.Trust{Insecure: true}}.ID()
	if err != nil {
		t.Fatal(err)
	}
	if ti := taskInfo(t, sn, id); ti.CdnStatus != types.CDNStatusSuccess {
		t.Fatalf("the --insecure task: CDN %s, want %s", ti.CdnStatus, types.CDNStatusSuccess)
	}
	verified := filepath.Join(out, "verified")
	r = newDfgetPeer(t, "127.0.0.31").run(sn, "-u", url, "-o", verified)
	t.Logf("without --insecure: exit %d: %s", r.code, lastLine(r.stdout))
	if r.code == 0 {
		t.Fatal("a dfget that verifies the origin got the file of a task fetched with --insecure")
	}
	noFile(t, verified)
	withCA := filepath.Join(out, "ca")
	if r := newDfgetPeer(t, "127.0.0.32").run(sn, "-u", url, "-o", withCA, "--cacerts", ca, "--notbs"); r.code != 0 {
		t.Fatalf("--cacerts: exit %d\n%s", r.code, r.stdout)
	}
	fileEquals(t, withCA, data)
}
