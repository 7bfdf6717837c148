package swarm

import (
	"context"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/test/cluster"
	"github.com/damselfly-p2p/damselfly/test/imagetest"
)

func TestFluidLimit(t *testing.T) {
	const mib = 1 << 20
	// 128 MiB over 400 Mbit/s.
	one := time.Duration(128 * mib * 8 / 400e6 * float64(time.Second))
	if got := FluidLimit(Dfget, 16, 128*mib, 400e6, 0); got != one {
		t.Errorf("p2p, unshaped peers: %v, want %v", got, one)
	}
	if got := FluidLimit(Curl, 16, 128*mib, 400e6, 0); got != 16*one {
		t.Errorf("curl: %v, want %v", got, 16*one)
	}
	// Slow peers make the aggregate upload the bottleneck:
	// 16F/(400+16*10) Mbit/s > F/400 Mbit/s.
	want := 16 * 128 * mib * 8 / 560e6
	if got := FluidLimit(Dfget, 16, 128*mib, 400e6, 10e6).Seconds(); got < want*0.999 || got > want*1.001 {
		t.Errorf("p2p, shaped peers: %v, want %v", got, want)
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{64 << 20: "64 MiB", 1 << 30: "1 GiB", 1536: "1.5 KiB", -1: "n/a", 3<<20 + 1: "3.0 MiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := FormatRate(400e6); got != "400 Mbit/s" {
		t.Errorf("FormatRate = %q", got)
	}
}

func TestCurlSwarm(t *testing.T) {
	imagetest.NeedTool(t, "curl")
	res, err := Run(context.Background(), Config{Client: Curl, Peers: 3, Size: 2 << 20, OriginRate: 100 * cluster.Mbit, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !res.AllVerified {
		t.Fatalf("not verified: %+v", res.PeerResults)
	}
	if res.OriginBytes != 3*2<<20 {
		t.Errorf("origin served %d bytes, want %d", res.OriginBytes, 3*2<<20)
	}
	t.Logf("mode %s wall %v fluid %v ratio %.2f", res.Mode, res.Wall, res.Fluid, res.Ratio())
	if res.Mode == "netns" && res.Ratio() < 0.8 {
		t.Errorf("curl beat the shaped origin: ratio %.2f", res.Ratio())
	}
	if _, err := Run(context.Background(), Config{Client: "wget", Peers: 1, Size: 1, OriginRate: 1}); err == nil {
		t.Error("unknown client accepted")
	}
}
