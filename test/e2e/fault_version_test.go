package e2e

import (
	"bytes"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// otherVersion is data changed in every 4 MiB piece, cut to n bytes: what
// the origin serves after the file changed. No piece written from the
// first version may then be kept.
func otherVersion(data []byte, n int) []byte {
	const content = 4<<20 - 5
	v := bytes.Clone(data[:n])
	for off := 0; off < n; off += content {
		v[off+11] ^= 0x5a
	}
	return v
}

// Two supernodes filled their caches from an origin whose file changed
// between the two fills: sn1 holds version 1, sn2 version 2 (once of the
// same length, once shorter). sn1 is killed (SIGKILL) once each dfget has
// written pieces through it, and dfget migrates to sn2. A file download
// can fetch again what it holds, so each must succeed with version 2
// exactly: the pieces written from version 1 refused (same length) or
// the file started over (shorter), never version 1's pieces with
// version 2's.
func TestFaultMigrationBetweenVersions(t *testing.T) {
	o := newOrigin(t)
	v1 := randomData(24<<20, 97)
	sn1, sn2, nodeList := versionNodes(t)
	cases := []struct {
		name string
		v2   []byte
		url  string
	}{
		{name: "same length", v2: otherVersion(v1, len(v1))},
		{name: "shorter", v2: otherVersion(v1, 20<<20)},
	}
	for i := range cases {
		cases[i].url = fillVersions(t, o, "/version-"+strconv.Itoa(i)+".bin", v1, cases[i].v2, sn1, sn2, nodeList)
	}

	out := t.TempDir()
	runs := make([]<-chan dfgetRun, len(cases))
	peers := make([]*dfgetPeer, len(cases))
	for i, c := range cases {
		peers[i] = newDfgetPeer(t, "127.0.0."+strconv.Itoa(20+i))
		runs[i] = peers[i].runAsync(nil, "-u", c.url, "-o", filepath.Join(out, strconv.Itoa(i)), "--notbs",
			"--node", nodeList, "--locallimit", "6MB", "--verbose") // 24 MiB: about 4 s
	}
	// --verbose logs each written piece: the kill comes once both have
	// written pieces of version 1, whatever the machine's load.
	written := regexp.MustCompile(`piece \d+ from \S+: fetch`)
	Eventually(t, 30*time.Second, "both dfgets writing two pieces through sn1", func() bool {
		for _, p := range peers {
			if len(written.FindAllStringIndex(p.clientLog(), -1)) < 2 {
				return false
			}
		}
		return true
	})
	sn1.kill(t)

	for i, c := range cases {
		r := <-runs[i]
		log := peers[i].clientLog()
		t.Logf("%s: exit %d: %s", c.name, r.code, lastLine(r.stdout))
		if r.code != 0 || !strings.Contains(r.stdout, "migrated to node:"+Addr(sn2.api)) {
			t.Errorf("%s: exit %d; want 0 after a migration to sn2\n%s", c.name, r.code, r.stdout)
			continue
		}
		fileEquals(t, filepath.Join(out, strconv.Itoa(i)), c.v2)
		switch m := regexp.MustCompile(`going on with the (\d+) pieces already written`).FindStringSubmatch(log); {
		case c.name == "shorter" && m != nil:
			t.Errorf("%s: kept the pieces of a file of another length", c.name)
		case c.name == "same length" && m == nil:
			t.Errorf("%s: kept no pieces written before the kill: nothing tested", c.name)
		case m != nil:
			again := strings.Count(log, "fetching it again")
			t.Logf("%s: %s pieces written from sn1, %d fetched again after their check failed", c.name, m[1], again)
			if n, _ := strconv.Atoi(m[1]); n == 0 || again == 0 {
				t.Errorf("%s: %d pieces of version 1 kept, %d refused: nothing tested", c.name, n, again)
			}
		}
	}
}

// A stream through sn1, whose cache holds version 1 of the file, moves to
// sn2 when sn1 is killed (SIGKILL) mid-stream; sn2's cache holds version 2,
// of the same length and piece size (the origin's file changed between
// the two fills). dfget sends no startPiece (and sn2 would ignore one), so
// sn2 offers the pieces already out too,
// whose BLAKE3 digests there are not the ones they were verified with:
// the stream fails (exit 80, reason 3) with only version 1's bytes out,
// never version 2's tail after version 1's head.
func TestFaultStreamMigrationBetweenVersions(t *testing.T) {
	o := newOrigin(t)
	v1 := randomData(24<<20, 98)
	sn1, sn2, nodeList := versionNodes(t)
	url := fillVersions(t, o, "/stream-version.bin", v1, otherVersion(v1, len(v1)), sn1, sn2, nodeList)

	p := newDfgetPeer(t, "127.0.0.30")
	var got []byte
	r := p.stream(nil, func(r io.Reader) {
		head := make([]byte, 6<<20)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Errorf("first bytes: %v", err)
		}
		sn1.kill(t)
		rest, _ := io.ReadAll(r)
		got = append(head, rest...)
	}, "-u", url, "--node", nodeList, "--window-size", "2", "--locallimit", "20MB", "--notbs")
	t.Logf("exit %d, %d bytes out: %s", r.code, len(got), lastLine(r.stderr))
	if !strings.Contains(r.stderr, "migrated to node:"+Addr(sn2.api)) {
		t.Fatalf("no migration to sn2: exit %d\n%s", r.code, r.stderr)
	}
	if r.code != 80 || !strings.Contains(r.stderr, "reason:3") || !strings.Contains(r.stderr, "does not match the new supernode") {
		t.Errorf("exit %d after a move to a node with another version; want 80, reason 3, the digest mismatch\n%s", r.code, r.stderr)
	}
	if len(got) > len(v1) || !bytes.Equal(got, v1[:len(got)]) {
		t.Errorf("the %d bytes out are not a head of version 1: two versions spliced", len(got))
	}
}

// versionNodes starts two supernodes and the --node list that has dfget
// register with sn1 first.
func versionNodes(t *testing.T) (sn1, sn2 *supernode, nodeList string) {
	sn1, sn2 = startSupernode(t, t.TempDir()), startSupernode(t, t.TempDir())
	return sn1, sn2, Addr(sn1.api) + "=1000," + Addr(sn2.api)
}

// fillVersions serves v1 at path, has sn1 cache it, changes it to v2 at
// the origin and has sn2 cache that; it returns the URL, homed on sn1.
func fillVersions(t *testing.T, o *origin, path string, v1, v2 []byte, sn1, sn2 *supernode, nodeList string) string {
	t.Helper()
	url := urlHomedOn(t, o.add(path, v1), nodeList, Addr(sn1.api))
	fill(t, sn1, url, "127.0.0.9-fill1")
	o.add(path, v2)
	fill(t, sn2, url, "127.0.0.9-fill2")
	return url
}

// fill has sn cache url's file as the origin serves it now.
func fill(t *testing.T, sn *supernode, url, cid string) {
	t.Helper()
	c := newClient(t, sn, cid)
	waitCDN(t, sn, c.register(c.registerReq(url)).TaskID, time.Minute)
}
