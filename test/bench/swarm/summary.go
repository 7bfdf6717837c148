package swarm

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteSummary prints the short per-peer report of one run (the demo's
// output).
func WriteSummary(w io.Writer, r *Result) {
	fmt.Fprintf(w, "%d %s peers downloaded one %s file at once (%s mode, origin uplink %s, supernode uplink %s)\n\n",
		r.Peers, r.Client, FormatBytes(r.Size), r.Mode, FormatRate(r.OriginRate), FormatRate(r.SupernodeRate))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "peer\taddress\ttime\tuploaded\tpeak RSS\tcontent")
	for _, p := range r.PeerResults {
		status := "verified"
		if !p.Verified {
			status = "FAILED: " + firstLine(p.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2fs\t%s\t%s\t%s\n", p.Host, p.IP, p.Duration.Seconds(), FormatBytes(p.Sent), FormatBytes(p.MaxRSS), status)
	}
	tw.Flush()
	if r.Mode == "loopback" {
		fmt.Fprintf(w, "\nall peers done in %.2fs (loopback: nothing shaped, so no fluid-model limit)\n", r.Wall.Seconds())
	} else {
		fmt.Fprintf(w, "\nall peers done in %.2fs; fluid-model limit %.2fs (ratio %.2f)\n", r.Wall.Seconds(), r.Fluid.Seconds(), r.Ratio())
	}
	fmt.Fprintf(w, "bytes from the origin: %s (%.3f x the file)", FormatBytes(r.OriginBytes), r.OriginFactor())
	if r.OriginWire >= 0 {
		fmt.Fprintf(w, "; %s on the origin's wire", FormatBytes(r.OriginWire))
	}
	fmt.Fprintln(w)
	switch {
	case r.PeerUpload >= 0:
		fmt.Fprintf(w, "bytes exchanged between peers: %s (sum of the peers' uplinks, on the wire)\n", FormatBytes(r.PeerUpload))
	case r.SupernodeServed >= 0:
		fmt.Fprintf(w, "bytes exchanged between peers: ~%s (all received minus the %s the supernode served)\n",
			FormatBytes(max(0, int64(r.Peers)*r.Size-r.SupernodeServed)), FormatBytes(r.SupernodeServed))
	default:
		fmt.Fprintln(w, "bytes exchanged between peers: n/a (loopback mode has no interface counters)")
	}
	if r.SupernodeServed >= 0 {
		fmt.Fprintf(w, "bytes the supernode served to peers: %s\n", FormatBytes(r.SupernodeServed))
	}
	ok := 0
	for _, p := range r.PeerResults {
		if p.Verified {
			ok++
		}
	}
	fmt.Fprintf(w, "content verified: %d/%d peers\n", ok, r.Peers)
}
