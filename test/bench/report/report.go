// Package report collects the figures of one `make bench` run, checks the
// targets, and writes them as one Markdown table (plus short sections for
// the other benchmarks) and as JSON for comparing runs.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/test/bench/load"
	"github.com/damselfly-p2p/damselfly/test/bench/swarm"
)

// Targets of issue #5 for the swarm configurations marked as target runs.
const (
	TargetOriginFactor = 1.02 // bytes from the origin / F
	TargetRatio        = 1.5  // time of the last peer / fluid limit
	// TargetRatioSmall is the ratio target of a swarm of at most
	// SmallSwarm peers, where the CDN's own read dominates less.
	TargetRatioSmall = 1.25
	SmallSwarm       = 8
	TargetTaskP99    = 5 * time.Millisecond
)

// Row is one swarm configuration's outcome.
type Row struct {
	Result *swarm.Result `json:"result,omitempty"`
	// Target marks a configuration whose targets are checked.
	Target bool   `json:"target"`
	Error  string `json:"error,omitempty"`
	// Spec is set when Result is nil (the run failed to produce one).
	Spec string `json:"spec"`
}

// NotCheckedLoopback is what a target row run in loopback mode says
// instead of pass or FAIL: nothing is shaped there, so the wall time cannot
// be held against the fluid limit computed from the origin's rate.
const NotCheckedLoopback = "not checked (loopback: no link shaped)"

// Unchecked says whether a target row ran where its targets cannot be
// checked (loopback mode).
func (r Row) Unchecked() bool {
	return r.Target && r.Result != nil && r.Result.Mode == "loopback"
}

// Pass says whether a target row met every target; false for other rows
// and for unchecked ones.
func (r Row) Pass() bool {
	if !r.Target || r.Result == nil || r.Error != "" || r.Unchecked() {
		return false
	}
	res := r.Result
	return res.AllVerified && res.OriginFactor() <= TargetOriginFactor && res.Ratio() <= TargetRatioFor(res.Peers)
}

// TargetRatioFor is the time target, over the fluid limit, of a swarm of
// peers.
func TargetRatioFor(peers int) float64 {
	if peers <= SmallSwarm {
		return TargetRatioSmall
	}
	return TargetRatio
}

// LoadRow is one load run; Target marks an issue #6 configuration (paced
// clients, a simulated piece download time), whose latency is checked.
type LoadRow struct {
	Result *load.Result `json:"result"`
	Target bool         `json:"target"`
}

// Pass says whether the run had no failure, every client completed or ran
// until the window ended, and the client-seen p99 of the /peer/task
// answers that were not long-poll holds met the target.
func (l LoadRow) Pass() bool {
	r := l.Result
	return r.Failed == 0 && r.Aborted == 0 && r.Completed+r.Stopped == r.Clients && r.TaskP99 <= TargetTaskP99
}

// Section is a free-form block of figures (load, single download, CDN,
// stream): a title and name/value lines, kept in order.
type Section struct {
	Title string      `json:"title"`
	Lines [][2]string `json:"lines"`
	Error string      `json:"error,omitempty"`
	// Missed names the section's checked targets that were missed; each
	// is a problem of the run, like a failed swarm target.
	Missed []string `json:"missed,omitempty"`
	// Unchecked names the section's targets that this mode cannot check
	// (a time against a shaped link, in loopback mode).
	Unchecked []string `json:"unchecked,omitempty"`
}

// NotChecked records a target that cannot be checked in loopback mode and
// returns what to print in place of pass or FAIL.
func (s *Section) NotChecked(name string) string {
	s.Unchecked = append(s.Unchecked, name)
	return NotCheckedLoopback
}

// Check records a checked target: "pass", or "FAIL" with name added to
// Missed.
func (s *Section) Check(name string, ok bool) string {
	if ok {
		return "pass"
	}
	s.Missed = append(s.Missed, name)
	return "FAIL"
}

// Add appends a line.
func (s *Section) Add(name, format string, args ...any) {
	s.Lines = append(s.Lines, [2]string{name, fmt.Sprintf(format, args...)})
}

// Report is one bench run.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"durationNs"`
	Mode     string        `json:"mode"`
	Note     string        `json:"note,omitempty"`
	Rows     []Row         `json:"swarm"`
	Loads    []LoadRow     `json:"load,omitempty"`
	Sections []Section     `json:"sections"`
}

// Failed lists what failed: errors and missed targets.
func (r *Report) Failed() []string {
	var f []string
	for _, row := range r.Rows {
		switch {
		case row.Error != "":
			f = append(f, row.Spec+": "+firstLine(row.Error))
		case row.Unchecked():
			if !row.Result.AllVerified {
				f = append(f, row.Spec+": wrong content")
			}
		case row.Target && !row.Pass():
			f = append(f, row.Spec+": target missed")
		case row.Result != nil && !row.Result.AllVerified:
			f = append(f, row.Spec+": wrong content")
		}
	}
	for _, l := range r.Loads {
		res := l.Result
		if res.Failed > 0 || res.Aborted > 0 || res.Completed+res.Stopped < res.Clients {
			f = append(f, fmt.Sprintf("load (piece rate %v): %d failed and %d aborted requests, %d/%d clients completed or ran to the end of the window",
				res.Rate, res.Failed, res.Aborted, res.Completed+res.Stopped, res.Clients))
		}
		if l.Target && res.TaskP99 > TargetTaskP99 {
			f = append(f, fmt.Sprintf("load (piece rate %v): /peer/task p99 (not held) %v > %v", res.Rate, res.TaskP99.Round(time.Microsecond), TargetTaskP99))
		}
	}
	for _, s := range r.Sections {
		if s.Error != "" {
			f = append(f, s.Title+": "+firstLine(s.Error))
		}
		for _, m := range s.Missed {
			f = append(f, s.Title+": "+m+" target missed")
		}
	}
	return f
}

// Unchecked lists the swarm target rows and section targets that were not
// checked (loopback mode): a run with any is not a run that met its targets.
func (r *Report) Unchecked() []string {
	var u []string
	for _, row := range r.Rows {
		if row.Error == "" && row.Unchecked() {
			u = append(u, row.Spec)
		}
	}
	for _, s := range r.Sections {
		for _, n := range s.Unchecked {
			u = append(u, s.Title+": "+n)
		}
	}
	return u
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

// WriteMarkdown writes the swarm table and the other sections.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "## make bench, %s (%s mode)\n\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Mode)
	if r.Note != "" {
		fmt.Fprintf(w, "%s\n\n", r.Note)
	}
	if len(r.Rows) > 0 {
		fmt.Fprintln(w, "| client | N | size | origin | wall s | fluid limit s | ratio | origin bytes / F | peer upload | supernode share | max RSS | correct | target |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
		for _, row := range r.Rows {
			if row.Result == nil {
				fmt.Fprintf(w, "| %s | | | | | | | | | | | ERROR: %s | |\n", row.Spec, escape(firstLine(row.Error)))
				continue
			}
			res := row.Result
			correct := fmt.Sprintf("%d/%d", verified(res), res.Peers)
			if row.Error != "" {
				correct += " ERROR: " + escape(firstLine(row.Error))
			}
			target := ""
			switch {
			case row.Unchecked():
				target = NotCheckedLoopback
			case row.Target:
				target = "FAIL"
				if row.Pass() {
					target = "pass"
				}
				target += fmt.Sprintf(" (<=%.2fxF, <=%.2fx)", TargetOriginFactor, TargetRatioFor(res.Peers))
			}
			share := ""
			if res.SupernodeServed >= 0 && res.Size > 0 {
				share = fmt.Sprintf("%.2f", float64(res.SupernodeServed)/float64(int64(res.Peers)*res.Size))
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %.2f | %.3f | %s | %s | %s | %s | %s |\n",
				res.Client, res.Peers, swarm.FormatBytes(res.Size), swarm.FormatRate(res.OriginRate),
				sec(res.Wall), sec(res.Fluid), res.Ratio(), res.OriginFactor(),
				swarm.FormatBytes(res.PeerUpload), share, swarm.FormatBytes(res.MaxRSS), correct, target)
		}
		fmt.Fprintln(w)
	}
	if len(r.Loads) > 0 {
		fmt.Fprintf(w, "### Supernode load (issue #6)\n\n")
		fmt.Fprintln(w, "| clients | pieces | piece size | piece rate | time s | requests | req/s | pieces done | failed | aborted | completed / stopped | /peer/task p50 | p99 | max | p99 after 5 s | held share | held p50 | held p99 | suc p99 | register p99 | server /peer/task p50 | p99 | schedule p99 | supernode CPU | client CPU | supernode peak RSS | target |")
		fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
		for _, lr := range r.Loads {
			l := lr.Result
			target := "(not checked)"
			if lr.Target {
				target = "FAIL"
				if lr.Pass() {
					target = "pass"
				}
				target += fmt.Sprintf(" (p99<%v, none failed)", TargetTaskP99)
			}
			fmt.Fprintf(w, "| %d | %d | %d | %v | %s | %d | %.0f | %d | %d | %d | %d / %d | %s | %s | %s | %s | %.1f%% | %s | %s | %s | %s | %s | %s | %s | %.1f s (%.2f cores) | %.2f cores | %s | %s |\n",
				l.Clients, l.Pieces, l.PieceSize, l.Rate, sec(l.Duration), l.Requests, l.RPS, l.PiecesDone, l.Failed, l.Aborted,
				l.Completed, l.Stopped, ms(l.TaskP50), ms(l.TaskP99), ms(l.TaskMax), ms(l.SteadyP99), 100*l.HeldShare(), ms(l.HeldP50), ms(l.HeldP99),
				ms(l.SucP99), ms(l.RegP99), l.ServerTaskP50, l.ServerTaskP99, l.ScheduleP99,
				l.SupernodeCPU.Seconds(), l.SupernodeCPU.Seconds()/max(l.Duration.Seconds(), 1e-9),
				l.ClientCPU.Seconds()/max(l.Duration.Seconds(), 1e-9), swarm.FormatBytes(l.SupernodeRSS), target)
		}
		for _, lr := range r.Loads {
			if lr.Result.FirstError != "" {
				fmt.Fprintf(w, "\nfirst error (piece rate %v): %s\n", lr.Result.Rate, escape(firstLine(lr.Result.FirstError)))
			}
		}
		fmt.Fprintln(w)
	}
	for _, s := range r.Sections {
		fmt.Fprintf(w, "### %s\n\n", s.Title)
		if s.Error != "" {
			fmt.Fprintf(w, "ERROR: %s\n\n", escape(firstLine(s.Error)))
		}
		if len(s.Lines) > 0 {
			fmt.Fprintln(w, "| figure | value |\n| --- | --- |")
			for _, l := range s.Lines {
				fmt.Fprintf(w, "| %s | %s |\n", escape(l[0]), escape(l[1]))
			}
			fmt.Fprintln(w)
		}
	}
	u := r.Unchecked()
	switch f := r.Failed(); {
	case len(f) > 0:
		fmt.Fprintf(w, "**%d problem(s):** %s\n", len(f), escape(strings.Join(f, "; ")))
	case len(u) > 0:
		fmt.Fprintf(w, "All runs correct, but %d target(s) were not checked (loopback: no link shaped), so this run does not show them met: %s\n",
			len(u), escape(strings.Join(u, "; ")))
	default:
		fmt.Fprintln(w, "All runs correct and all checked targets met.")
	}
	if len(u) > 0 && len(r.Failed()) > 0 {
		fmt.Fprintf(w, "\n%d target(s) not checked (loopback: no link shaped).\n", len(u))
	}
	fmt.Fprintf(w, "\nTotal bench time %s.\n", r.Duration.Round(time.Second))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func verified(r *swarm.Result) int {
	n := 0
	for _, p := range r.PeerResults {
		if p.Verified {
			n++
		}
	}
	return n
}

// Save writes the report as JSON to dir/<timestamp>.json and returns the
// path.
func (r *Report) Save(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	path := filepath.Join(dir, r.Started.UTC().Format("20060102T150405Z")+".json")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write results: %w", err)
	}
	return path, nil
}
