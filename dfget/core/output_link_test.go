package core

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/damselfly-p2p/damselfly/dfget/config"
)

// -o onto a symlink replaces the file it names, not the link, for both
// ways a file is published: a back-source download renamed over the
// output, and a P2P download linked from the peer server's data.
func TestOutputSymlinkSurvives(t *testing.T) {
	body := content(3000)
	o := origin(t, body)
	for _, pattern := range []string{config.PatternSource, config.PatternP2P} {
		sn := newFakeSupernode(t, body)
		cfg := testConfig(t, o.URL+"/file", sn.node())
		cfg.Pattern = pattern
		if pattern == config.PatternP2P {
			peerServer(t, cfg)
		}
		dir := filepath.Dir(cfg.Output)
		target := filepath.Join(dir, "target")
		if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("target", cfg.Output); err != nil {
			t.Fatal(err)
		}
		if code, out := run(t, cfg, nil); code != 0 {
			t.Fatalf("%s: exit %d\n%s", pattern, code, out)
		}
		link := filepath.Join(dir, "out")
		if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s: the link was replaced: %v %v", pattern, st.Mode(), err)
		}
		mustSame(t, target, body)
		if ents, _ := os.ReadDir(dir); len(ents) != 3 { // out, target, home
			t.Errorf("%s: leftovers in the output dir: %v", pattern, ents)
		}
	}
}
