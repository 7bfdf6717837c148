package e2e

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/pkg/nodes"
	"github.com/damselfly-p2p/damselfly/pkg/taskid"
)

// kill sends SIGKILL to the process group and waits for the exit: a crash,
// with no graceful shutdown.
func (p *Proc) kill(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	if err := p.Wait(10 * time.Second); err == nil {
		t.Fatalf("%s exited cleanly after SIGKILL?", p.Name)
	}
}

// runAsync starts a dfget run and returns a channel with its result.
func (p *dfgetPeer) runAsync(sn *supernode, extra ...string) <-chan dfgetRun {
	ch := make(chan dfgetRun, 1)
	go func() { ch <- p.run(sn, extra...) }()
	return ch
}

// urlHomedOn returns base with a query that makes home the first node of
// nodeList for its task. With weights the home is only likely (weighted
// rendezvous hashing of the task ID: 1000 to 1 odds for weights 1000 and
// 1), and a test that kills the node a download started on must not
// depend on odds.
func urlHomedOn(t *testing.T, base, nodeList, home string) string {
	t.Helper()
	list, err := nodes.ParseList(nodeList)
	if err != nil {
		t.Fatal(err)
	}
	for k := range 1000 {
		u := base + "?try=" + strconv.Itoa(k)
		if list.Home(taskid.ID(u, "", "", nil))[0].Addr() == home {
			return u
		}
	}
	t.Fatalf("no URL of 1000 tried has %s first in %s", home, nodeList)
	return ""
}

// The supernode is killed (SIGKILL) while dfgets download through it
// (rate-limited so the kill lands mid-download):
//   - with a second --node, dfget migrates to it and finishes (--notbs);
//   - alone with --notbs, dfget fails cleanly: exit 80, no output file;
//   - alone without --notbs, dfget finishes from the source;
//   - a supernode restarted on the same home serves the finished cache
//     without reading the source body again (only a conditional 304).
func TestFaultSupernodeKilledMidDownload(t *testing.T) {
	o := newOrigin(t)
	data := randomData(24<<20, 91)
	base := o.add("/snkill.bin", data)
	home := t.TempDir()
	sn1 := startSupernode(t, home)
	sn2 := startSupernode(t, t.TempDir())
	nodeList := Addr(sn1.api) + "=1000," + Addr(sn2.api)
	url := urlHomedOn(t, base, nodeList, Addr(sn1.api))
	warm := newClient(t, sn1, "127.0.0.9-warm")
	id := warm.register(warm.registerReq(url)).TaskID
	if want := taskid.ID(url, "", "", nil); id != want {
		t.Fatalf("supernode task ID %s, want %s", id, want)
	}
	waitCDN(t, sn1, id, time.Minute)
	if n := o.count("/snkill.bin", 200); n != 1 {
		t.Fatalf("warm-up: origin sent the file %d times", n)
	}

	out := t.TempDir()
	slow := []string{"--locallimit", "6MB"} // 24 MiB: about 4 s
	pa, pb, pc := newDfgetPeer(t, "127.0.0.2"), newDfgetPeer(t, "127.0.0.3"), newDfgetPeer(t, "127.0.0.4")
	failover := pa.runAsync(nil, append([]string{"-u", url, "-o", filepath.Join(out, "failover"), "--notbs",
		"--node", nodeList, "--verbose"}, slow...)...)
	notbs := pb.runAsync(sn1, append([]string{"-u", url, "-o", filepath.Join(out, "notbs"), "--notbs"}, slow...)...)
	back := pc.runAsync(sn1, append([]string{"-u", url, "-o", filepath.Join(out, "back")}, slow...)...)
	// The kill must come after the failover dfget wrote pieces, else
	// there is nothing it could keep (--verbose logs each written piece).
	written := regexp.MustCompile(`piece \d+ from \S+: fetch`)
	Eventually(t, 30*time.Second, "the failover dfget writing two pieces", func() bool {
		return len(written.FindAllStringIndex(pa.clientLog(), -1)) >= 2
	})
	start := time.Now()
	sn1.kill(t)

	r := <-failover
	t.Logf("failover: exit %d after the kill %v", r.code, time.Since(start).Round(time.Millisecond))
	if r.code != 0 || !strings.Contains(r.stdout, "migrated to node:"+Addr(sn2.api)) {
		t.Errorf("with a second node: exit %d\n%s", r.code, r.stdout)
	} else {
		fileEquals(t, filepath.Join(out, "failover"), data)
		// The pieces written before the kill are confirmed to sn2, not
		// fetched from it again: sn2 (whose only client this is) sends
		// less than the whole wrapped file.
		sent := metricValue(t, sn2, "dragonfly_supernode_piece_server_sent_bytes_total")
		pieces := (len(data) + 4<<20 - 5 - 1) / (4<<20 - 5)
		wrapped := float64(len(data) + 5*pieces)
		m := regexp.MustCompile(`going on with the (\d+) pieces already written`).FindStringSubmatch(pa.clientLog())
		if m == nil {
			t.Error("the failover dfget did not say how many pieces it kept")
		} else if n, _ := strconv.Atoi(m[1]); n == 0 {
			t.Error("the failover dfget kept no piece although it had written some before the kill")
		} else if sent <= 0 || sent >= wrapped {
			t.Errorf("sn2 sent %.0f of %.0f bytes although %d pieces were written before the kill", sent, wrapped, n)
		} else {
			t.Logf("failover: %d pieces written before the kill; sn2 sent %.0f of %.0f bytes", n, sent, wrapped)
		}
	}
	r = <-notbs
	if r.code != 80 || !strings.Contains(r.stdout, "download FAIL") {
		t.Errorf("--notbs alone: exit %d\n%s", r.code, r.stdout)
	}
	noFile(t, filepath.Join(out, "notbs"))
	r = <-back
	if r.code != 0 || !strings.Contains(r.stdout, "reason:") || strings.Contains(r.stdout, "reason:0") {
		t.Errorf("fallback to the source: exit %d\n%s", r.code, r.stdout)
	} else {
		fileEquals(t, filepath.Join(out, "back"), data)
	}
	full := o.count("/snkill.bin", 200) + o.count("/snkill.bin", 206)
	t.Logf("origin: %d full/range answers so far (warm-up, sn2's CDN, fallback)", full)

	// Restart on the same home: the finished cache is trusted after a 304.
	before200, before206 := o.count("/snkill.bin", 200), o.count("/snkill.bin", 206)
	sn3 := startSupernode(t, home)
	pd := newDfgetPeer(t, "127.0.0.5")
	if r := pd.run(sn3, "-u", url, "-o", filepath.Join(out, "restart"), "--notbs"); r.code != 0 {
		t.Fatalf("after restart: exit %d %s", r.code, r.stdout)
	}
	fileEquals(t, filepath.Join(out, "restart"), data)
	if d200, d206, n304 := o.count("/snkill.bin", 200)-before200, o.count("/snkill.bin", 206)-before206, o.count("/snkill.bin", 304); d200 != 0 || d206 != 0 || n304 != 1 {
		t.Errorf("restarted supernode: origin sent 200 x%d, 206 x%d, 304 x%d; want 0, 0, 1", d200, d206, n304)
	}
	if v := metricPresent(t, sn3, "dragonfly_supernode_cdn_download_size_bytes_total"); v != 0 {
		t.Errorf("restarted supernode read %v bytes from the source, want 0", v)
	}
}
