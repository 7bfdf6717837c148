// Package progressbar draws dfget's --showbar progress bar: bytes done, rate
// and ETA on one self-overwriting line, only when the output is a terminal.
package progressbar

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Bar is a progress bar. The zero value is not usable; use New.
type Bar struct {
	out   io.Writer
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// New starts a bar for total bytes (<0 unknown) drawing to out every
// interval; out nil gives a bar that only counts.
func New(out io.Writer, total int64) *Bar {
	b := &Bar{out: out, total: total, start: time.Now(), stop: make(chan struct{})}
	if out != nil {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

// Add counts n more bytes.
func (b *Bar) Add(n int64) { b.done.Add(n) }

// Done is the bytes counted so far.
func (b *Bar) Done() int64 { return b.done.Load() }

// Close draws the last state and ends the line.
func (b *Bar) Close() {
	close(b.stop)
	b.wg.Wait()
	if b.out == nil {
		return
	}
	if b.done.Load() > 0 {
		fmt.Fprint(b.out, "\r"+b.Line(time.Now())+"\x1b[K\n")
	} else {
		fmt.Fprint(b.out, "\r\x1b[K")
	}
}

func (b *Bar) loop() {
	defer b.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			fmt.Fprint(b.out, "\r"+b.Line(now)+"\x1b[K")
		}
	}
}

// Line renders the bar at time now.
func (b *Bar) Line(now time.Time) string {
	done, total := b.done.Load(), b.total
	el := now.Sub(b.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	const width = 30
	bar, pct, eta := strings.Repeat("-", width), "  ?%", "--"
	if total > 0 {
		f := min(float64(done)/float64(total), 1)
		n := int(f * width)
		bar = strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		pct = fmt.Sprintf("%3.0f%%", f*100)
		if rate > 0 {
			eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
		}
	} else if total == 0 {
		bar, pct = strings.Repeat("=", width), "100%"
	}
	return fmt.Sprintf("[%s] %s %s %s/s ETA %s", bar, pct, Bytes(done), Bytes(int64(rate)), eta)
}

// Bytes formats a byte count with a binary unit.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
