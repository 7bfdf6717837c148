package core

import (
	"errors"
	"fmt"
	"time"

	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
)

// A download's back-source reason (config.Reason*, printed as reason:N and
// reported as backsourceReason) says why the source was, or would have
// been, read. Each failure that decides one is a *failure carrying it;
// afterP2P turns the P2P attempt's outcome into the reason and the next
// step, and report prints the final line and picks the exit status. No
// other code reads or sets a reason.

// failure is a download failure with the back-source reason it decides.
type failure struct {
	reason int
	// fallback: P2P is over and the source may still deliver the file.
	// Without it the failure ends the download (a stream whose bytes are
	// already out cannot be delivered again).
	fallback bool
	err      error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// fallBack is a P2P failure the source may make good.
func fallBack(reason int, err error) error {
	return &failure{reason: reason, fallback: true, err: err}
}

// fail is a failure that ends the download with reason.
func fail(reason int, err error) error { return &failure{reason: reason, err: err} }

// errNoP2P is the cause of a download that never tried P2P (--pattern
// source), printed when --notbs then forbids the source too.
var errNoP2P = errors.New("p2p download not possible")

// fileFailure is the failure a P2P download into a file ended with: err
// keeps its reason if it has one (a length or md5 check), a local write
// error is reason 4 (no space) or 6 (another one), any other error 3.
func fileFailure(err error) error {
	var lw *downloader.LocalWriteError
	var f *failure
	switch {
	case errors.As(err, &lw) && lw.NoSpace():
		return fallBack(config.ReasonNoSpace, err)
	case errors.As(err, &lw):
		return fallBack(config.ReasonWriteError, err)
	case errors.As(err, &f):
		return fallBack(f.reason, err)
	}
	return fallBack(config.ReasonDownloadError, err)
}

// afterP2P decides what follows the P2P attempt that ended with err: the
// back-source reason, the error the download ends with (nil: none yet),
// and whether the source takes over. The fallback is refused (+1000) when
// --notbs forbids it, and when P2P failed writing on this host (no space,
// read-only, I/O or permission error): the source would fail the same way
// after fetching the whole file again, so, as Dragonfly 1.x does for "no
// space", it is not read.
func afterP2P(err error, notBS bool) (reason int, final error, toSource bool) {
	var f *failure
	if !errors.As(err, &f) {
		return config.ReasonNone, err, false
	}
	if !f.fallback {
		return f.reason, err, false
	}
	if f.reason == config.ReasonNoSpace || f.reason == config.ReasonWriteError {
		return f.reason + config.ReasonNotBSAddition,
			fmt.Errorf("%w (a local write error: no fallback to the source)", f.err), false
	}
	if notBS {
		return f.reason + config.ReasonNotBSAddition, fmt.Errorf("%w (--notbs: no fallback to the source)", f.err), false
	}
	return f.reason, nil, true
}

// report prints the download's last console line (and logs it), with the
// time the download took, and returns the exit status: 0 on success and
// for a stream whose reader left, else ExitDownloadError.
func (d *Download) report(reason int, err error, took time.Duration) int {
	cost := took.Seconds()
	if err == nil {
		fmt.Fprintf(d.io.Console, "download SUCCESS cost:%.3fs length:%d reason:%d\n", cost, d.length, reason)
		d.log.Infof("download SUCCESS cost:%.3fs length:%d reason:%d peers:%d", cost, d.length, reason, d.fromPeers)
		return 0
	}
	if errors.Is(err, downloader.ErrConsumerGone) {
		fmt.Fprintf(d.io.Console, "download STOPPED cost:%.3fs length:%d reason:%d: %v\n", cost, d.length, reason, err)
		return 0
	}
	fmt.Fprintf(d.io.Console, "download FAIL(%d) cost:%.3fs length:%d reason:%d error:%v\n",
		config.CodeDownloadError, cost, max(d.length, 0), reason, err)
	d.log.Errorf("download FAIL: %v", err)
	return config.ExitDownloadError
}
