package task

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/apis/types"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/dfgettask"
	"github.com/damselfly-p2p/damselfly/supernode/mgr/progress"
)

var (
	owner = netip.MustParseAddr("198.18.0.1") // the address c1 registers from
	other = netip.MustParseAddr("198.18.0.2")
)

// clientCall is a call that acts as client cid of task id, from an address.
type clientCall struct {
	name string
	call func(cid string, from netip.Addr) error
}

// clientCalls are the task manager's calls as a client, on piece 0 of id.
func clientCalls(d *deps, id string) []clientCall {
	report := func(cid string, from netip.Addr) PieceReport {
		return PieceReport{TaskID: id, CID: cid, DstCID: "x", Range: "0-14", From: from}
	}
	return []clientCall{
		{"piece success", func(cid string, from netip.Addr) error { return d.m.PieceSuccess(report(cid, from)) }},
		{"stream add", func(cid string, from netip.Addr) error { return d.m.StreamPiece(report(cid, from), true) }},
		{"stream remove", func(cid string, from netip.Addr) error { return d.m.StreamPiece(report(cid, from), false) }},
		{"service down", func(cid string, from netip.Addr) error { return d.m.ServiceDown(id, cid, from) }},
	}
}

// actAsC1 makes clientCalls as c1, then registers c1 again, all from
// address from, and wants each to work: the calls change c1's progress,
// the registration replaces c1's record (of peer peerID) with one bound
// to from.
func actAsC1(t *testing.T, d *deps, id, peerID string, from netip.Addr) {
	t.Helper()
	d.prog.EXPECT().Update(id, "c1", 0, progress.Success).Return("super", nil)
	d.prog.EXPECT().AddHolder(id, "c1", 0).Return(nil)
	d.prog.EXPECT().RemoveHolder(id, "c1", 0).Return(nil)
	d.prog.EXPECT().PeerDown(peerID)
	for _, c := range clientCalls(d, id) {
		if err := c.call("c1", from); err != nil {
			t.Errorf("%s from %s: %v", c.name, from, err)
		}
	}
	d.prog.EXPECT().InitClient(id, "c1", d.peerOf("c1", id), false, false, 0)
	d.prog.EXPECT().DropHolder(id, peerID)
	d.prog.EXPECT().PeerDown(peerID)
	if _, err := d.m.Register(RegisterParams{Req: validReq(), RemoteIP: from.String()}); err != nil {
		t.Fatalf("c1 registering again from %s: %v", from, err)
	}
	if after, _ := d.dfget.Get("c1", id); after.Addr != from || after.PeerID == peerID {
		t.Fatalf("c1's record after registering again from %s: %+v", from, after)
	}
}

// A CID is no secret (every 601 shows holders' CIDs to other clients), so
// a client's calls are taken only from the address it registered from.
// From another one, reports, stream notes, service-down and a registration
// of its CID are refused, answered exactly as for an unknown client, and
// change nothing: the progress mock expects no call, and the client's
// record and the peers stay as they were. From its own address they work.
func TestClientCallsBoundToRegistrationAddress(t *testing.T) {
	d := newDeps(t)
	id := runningFrom(t, d, owner.String())
	before, err := d.dfget.Get("c1", id)
	if err != nil || before.Addr != owner {
		t.Fatalf("c1's record: %+v %v", before, err)
	}
	peers := len(d.peers.List(0, 0, false))
	for _, c := range clientCalls(d, id) {
		err, unknown := c.call("c1", other), c.call("nobody", other)
		if CodeOf(err) != types.CodeTargetNotFound || CodeOf(unknown) != CodeOf(err) ||
			strings.Replace(err.Error(), "c1", "nobody", 1) != unknown.Error() {
			t.Errorf("%s from %s: %v (code %d), want an unknown client's answer: %v (code %d)",
				c.name, other, err, CodeOf(err), unknown, CodeOf(unknown))
		}
		var fe *dfgettask.ForeignError
		if !errors.As(err, &fe) || fe.Bound != owner || fe.From != other {
			t.Errorf("%s from %s: %v does not carry the two addresses", c.name, other, err)
		}
	}
	var fe *dfgettask.ForeignError
	if _, err := d.m.Register(RegisterParams{Req: validReq(), RemoteIP: other.String()}); CodeOf(err) != types.CodeSystemError ||
		!errors.As(err, &fe) {
		t.Fatalf("c1 registering again from %s: %v (code %d), want a refusal", other, err, CodeOf(err))
	}
	if after, err := d.dfget.Get("c1", id); err != nil || after != before {
		t.Fatalf("c1's record changed: %+v %v, was %+v", after, err, before)
	}
	if n := len(d.peers.List(0, 0, false)); n != peers {
		t.Fatalf("%d peers after the refused registration, was %d", n, peers)
	}
	actAsC1(t, d, id, before.PeerID, owner)
}

// With the binding off (a NAT pool), calls as a client from any address
// work, as in Dragonfly 1.x.
func TestClientCallsFromAnyAddress(t *testing.T) {
	d := newDepsWith(t, dfgettask.Config{SuperPID: "super", AnyAddress: true})
	id := runningFrom(t, d, owner.String())
	before, _ := d.dfget.Get("c1", id)
	actAsC1(t, d, id, before.PeerID, other)
}
