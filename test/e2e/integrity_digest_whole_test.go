package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/pkg/digest"
	"github.com/damselfly-p2p/damselfly/supernode/store"
)

// cacheMeta reads the one .meta sidecar under a supernode home.
func cacheMeta(t *testing.T, home string) store.Meta {
	t.Helper()
	var metas []string
	err := filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".meta") {
			metas = append(metas, p)
		}
		return err
	})
	if err != nil || len(metas) != 1 {
		t.Fatalf("meta sidecars %v: %v", metas, err)
	}
	b, err := os.ReadFile(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	var m store.Meta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("meta %s: %v", b, err)
	}
	return m
}

// The expected sha256 of a whole file (--digest), through the real
// supernode and dfget. The right digest passes and the supernode records
// that it checked it. A wrong one fails the download (exit != 0, no output
// file: the supernode's fill fails the task, and the source fallback's file
// fails dfget's own check) and the supernode's cache is not kept as good.
// A second dfget with the right digest then gets the file: the task failed,
// so its registration fetches the source again, under its own digest.
func TestIntegrityWholeDigestFile(t *testing.T) {
	o := newOrigin(t)
	data := randomData(2*(4<<20)+777, 1301)
	url := o.add("/whole.bin", data)
	right := digest.Sum(digest.SHA256, data).String()
	wrong := digest.Sum(digest.SHA256, []byte("not the file")).String()
	home := t.TempDir()
	sn := startSupernode(t, home)
	out := filepath.Join(t.TempDir(), "out")

	r := newDfgetPeer(t, "127.0.0.41").run(sn, "--url", url, "--output", out, "--digest", wrong)
	if r.code == 0 {
		t.Fatalf("wrong digest: exit 0: %s", r.stdout)
	}
	noFile(t, out)
	if m := cacheMeta(t, home); m.Success || !m.Finish {
		t.Fatalf("cache after a digest mismatch: finish %v success %v, want a failed final fetch", m.Finish, m.Success)
	}
	fills := o.count("/whole.bin", 200)

	r = newDfgetPeer(t, "127.0.0.42").run(sn, "--url", url, "--output", out, "--digest", strings.ToUpper(right[:7])+right[7:])
	if r.code != 0 {
		t.Fatalf("right digest: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	fileEquals(t, out, data)
	if m := cacheMeta(t, home); !m.Success || m.Sha256 != right {
		t.Fatalf("cache after the right digest: success %v sha256 %q", m.Success, m.Sha256)
	}
	if n := o.count("/whole.bin", 200); n != fills+1 {
		t.Fatalf("the origin sent the file %d times after %d: the failed task was not fetched again", n, fills)
	}
}

// --digest is checked before any request: a malformed value, or one that
// names an algorithm other than sha256, exits 1 with a clear error and the
// origin and the supernode never hear of the download.
func TestIntegrityWholeDigestMalformed(t *testing.T) {
	o := newOrigin(t)
	url := o.add("/malformed.bin", randomData(1000, 1302))
	sn := startSupernode(t, t.TempDir())
	p := newDfgetPeer(t, "127.0.0.43")
	for _, v := range []string{"sha256:abc", strings.Repeat("a", 64), "md5:" + strings.Repeat("a", 32),
		"blake3:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("g", 64)} {
		out := filepath.Join(t.TempDir(), "out")
		r := p.run(sn, "--url", url, "--output", out, "--digest", v)
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "--digest") {
			t.Errorf("--digest %q: exit %d: %s %s", v, r.code, r.stdout, r.stderr)
		}
		noFile(t, out)
	}
	if n := o.count("/malformed.bin", 200) + o.count("/malformed.bin", 206); n != 0 {
		t.Fatalf("the origin was asked %d times", n)
	}
	if v := metricPresent(t, sn, "dragonfly_supernode_tasks_registered_total"); v != 0 {
		t.Fatalf("%v registrations", v)
	}
}

// Stream mode checks --digest at the end: the right digest exits 0 with
// the bytes; a wrong one exits non-zero (the bytes are out by then, so the
// exit status is what tells the consumer).
func TestIntegrityWholeDigestStream(t *testing.T) {
	o := newOrigin(t)
	data := randomData(4<<20+99, 1303)
	url := o.add("/stream-digest.bin", data)
	sn := startSupernode(t, t.TempDir())
	for i, tc := range []struct {
		digest string
		ok     bool
	}{
		{digest.Sum(digest.SHA256, data).String(), true},
		{digest.Sum(digest.SHA256, data[1:]).String(), false},
	} {
		var got bytes.Buffer
		p := newDfgetPeer(t, fmt.Sprintf("127.0.0.%d", 44+i))
		r := p.stream(sn, func(r io.Reader) { _, _ = io.Copy(&got, r) }, "--url", url, "--digest", tc.digest)
		if (r.code == 0) != tc.ok {
			t.Fatalf("digest ok %v: exit %d: %s", tc.ok, r.code, r.stderr)
		}
		if tc.ok && !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("stream differs: %d of %d bytes", got.Len(), len(data))
		}
	}
}
