package scheduler

import (
	"strconv"
	"testing"

	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

// BenchmarkSchedule measures one scheduling call on a task of 1000 pieces
// with 1000 clients, each piece held by every client that finished it.
func BenchmarkSchedule(b *testing.B) {
	const pieces, clients = 1000, 1000
	p := progress.New("super")
	p.InitTask("t")
	for i := range pieces {
		p.SetCDNPiece("t", i)
	}
	p.FinishCDN("t", pieces, true)
	for c := range clients {
		cid := "c" + strconv.Itoa(c)
		p.InitClient("t", cid, "p"+cid, false, false, 0)
		// Half the clients hold half the pieces.
		if c%2 == 0 {
			for i := 0; i < pieces; i += 2 {
				if _, err := p.Update("t", cid, i, progress.Success); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	s := New(p, Config{Limits: progress.Limits{DownLimit: 4, UpLimit: 5, SuperLimit: 16}, EliminationLimit: 5, FailureCountLimit: 5})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cid := "c" + strconv.Itoa(1+2*(i%(clients/2)))
		as, err := s.Schedule("t", cid)
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range as {
			p.Unassign("t", cid, a.Num)
		}
	}
}
