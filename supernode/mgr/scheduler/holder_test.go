package scheduler

import (
	"fmt"
	"testing"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// The holder policy, one situation per row, over a real progress store:
// client "c" (peer "pc") asks for piece 0, which peers "pa" and "pb" may
// hold.
func TestHolderPicker(t *testing.T) {
	lim := progress.Limits{DownLimit: 4, UpLimit: 2, SuperLimit: 1}
	for _, tc := range []struct {
		name string
		// setup prepares the store; holders of piece 0 are added first.
		holders []string
		setup   func(t *testing.T, p *progress.Manager)
		peers   bool
		want    string // "" for none
		dropped bool   // the holders were dropped for good
	}{
		{name: "no holder: the supernode", peers: true, want: "super"},
		{name: "idle holder", holders: []string{"a"}, peers: true, want: "pa"},
		{name: "least loaded holder", holders: []string{"a"}, peers: true, want: "pb",
			setup: func(t *testing.T, p *progress.Manager) { busy(t, p, "a", 1); hold(t, p, "b") }},
		{name: "holder at its upload limit: wait for it", holders: []string{"a"}, peers: true, want: "",
			setup: func(t *testing.T, p *progress.Manager) { busy(t, p, "a", 2) }},
		{name: "client served by the supernode only", holders: []string{"a"}, peers: false, want: "super"},
		{name: "down holder dropped", holders: []string{"a"}, peers: true, want: "super", dropped: true,
			setup: func(_ *testing.T, p *progress.Manager) { p.PeerDown("pa") }},
		{name: "cdn-pattern holder skipped", holders: []string{"cdn"}, peers: true, want: "super"},
		{name: "supernode at its limit", peers: true, want: "",
			setup: func(t *testing.T, p *progress.Manager) {
				p.InitClient("t", "o", "po", true, false, 0)
				if a := p.Assign("t", "o", []int{1}, 4, NewHolderPicker(lim, 5, true)); len(a) != 1 || a[0].Dst != "super" {
					t.Fatalf("other client: %v", a)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := progress.New("super")
			p.InitTask("t")
			for i := range 2 {
				p.SetCDNPiece("t", i)
			}
			for _, h := range tc.holders {
				hold(t, p, h)
			}
			p.InitClient("t", "c", "pc", false, false, 0)
			if tc.setup != nil {
				tc.setup(t, p)
			}
			got := ""
			if a := p.Assign("t", "c", []int{0}, lim.DownLimit, NewHolderPicker(lim, 5, tc.peers)); len(a) == 1 {
				got = a[0].Dst
			}
			if got != tc.want {
				t.Fatalf("piece 0 from %q, want %q", got, tc.want)
			}
			if n := len(p.Holders("t", 0)); tc.dropped != (n == 0 && len(tc.holders) > 0) {
				t.Fatalf("%d holders left (dropped: %v)", n, tc.dropped)
			}
		})
	}
}

// hold makes peer "p"+h a holder of piece 0 ("cdn": a CDN-pattern one).
func hold(t *testing.T, p *progress.Manager, h string) {
	t.Helper()
	p.InitClient("t", h, "p"+h, h == "cdn", false, 0)
	if _, err := p.Update("t", h, 0, progress.Success); err != nil {
		t.Fatal(err)
	}
}

// busy makes peer "p"+h, the only holder of piece 0, serve n uploads.
func busy(t *testing.T, p *progress.Manager, h string, n int) {
	t.Helper()
	for i := range n {
		cid := fmt.Sprintf("busy-%s-%d", h, i)
		p.InitClient("t", cid, "p"+cid, true, false, 0)
		if a := p.Assign("t", cid, []int{0}, 4, NewHolderPicker(progress.Limits{UpLimit: n}, 5, true)); len(a) != 1 || a[0].Dst != "p"+h {
			t.Fatalf("busy %s: %v", h, a)
		}
	}
}
