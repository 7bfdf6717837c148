package cdn

import (
	"errors"
	"fmt"
	"io"
)

// window is the part of a source body that is the task's content: a task
// with the client's own Range answered 200 (a source that ignores Range)
// holds the whole file, of which only the range may be stored, as a 206
// would have given it. It discards the bytes before the range as it reads
// them, so they pass the stall watchdog, the bandwidth limit and the byte
// counter like any (watchBody reads them through its countingReader), and
// closes the body once the range was read, so the rest of the file is not
// downloaded.
type window struct {
	r    io.Reader
	body io.Closer
	skip int64 // bytes still to discard before the range
	left int64 // range bytes still to give; -1: up to the body's end
	at   int64 // bytes read from the body, for messages
	// needsByte makes an end before the first range byte an error: a range
	// starting at or past the end of the file is no content (an origin
	// honouring Range answers it 416).
	needsByte bool
	gave      bool
	// skipped is told of discarded bytes (nil: no one), for a reader that
	// does not come through a countingReader.
	skipped func(n int)
}

// errBeforeRange is a body that ended before the range's first byte.
var errBeforeRange = errors.New("the source body ends before the range starts")

func newWindow(body io.ReadCloser, skip, left int64) *window {
	return &window{r: body, body: body, skip: skip, left: left}
}

func (w *window) Read(p []byte) (int, error) {
	if err := w.discard(p); err != nil {
		return 0, err
	}
	if w.left == 0 {
		w.body.Close()
		return 0, io.EOF
	}
	if w.left > 0 && int64(len(p)) > w.left {
		p = p[:w.left]
	}
	n, err := w.r.Read(p)
	w.at += int64(n)
	if n > 0 {
		w.gave = true
	}
	if w.left > 0 {
		w.left -= int64(n)
		if w.left == 0 {
			// The range is read: the rest of the file is not wanted.
			w.body.Close()
			if err == nil {
				err = io.EOF
			}
		}
	}
	if err == io.EOF && w.needsByte && !w.gave {
		return n, fmt.Errorf("%w: it has %d bytes", errBeforeRange, w.at)
	}
	return n, err
}

// discard reads and drops the bytes before the range, through p.
func (w *window) discard(p []byte) error {
	for w.skip > 0 && len(p) > 0 {
		n, err := w.r.Read(p[:min(int64(len(p)), w.skip)])
		w.skip -= int64(n)
		w.at += int64(n)
		if n > 0 && w.skipped != nil {
			w.skipped(n)
		}
		if err == io.EOF {
			return fmt.Errorf("%w: it ended at byte %d, the range's first is %d", errBeforeRange, w.at, w.at+w.skip)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *window) Close() error { return w.body.Close() }
