package suite

import "testing"

func TestDefault(t *testing.T) {
	c := Default()
	if c.CDNSize <= 0 || c.SingleSize <= 0 || c.TargetSize != 128<<20 || c.OriginRate != 400e6 {
		t.Errorf("default sizes/rates unset: %+v", c)
	}
	if len(c.TargetPeers) != 2 || c.TargetPeers[0] != 8 || c.TargetPeers[1] != 16 {
		t.Errorf("target peers %v, want 8 and 16", c.TargetPeers)
	}
	if c.LoadClients != 1000 || c.LoadPieces != 1000 || len(c.LoadRates) != 3 || c.LoadRates[0].Lo <= 0 || c.LoadRates[2].Lo != 0 {
		t.Errorf("load config %+v", c)
	}
	for _, s := range []string{Swarm, Target, Load, Single, CDN} {
		if !c.Selected(s) {
			t.Errorf("%s not selected by default", s)
		}
	}
	c.Only = []string{Load}
	if c.Selected(Swarm) || !c.Selected(Load) {
		t.Error("Only not honoured")
	}
}
