package core

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/dfget/config"
	"github.com/damselfly-p2p/damselfly/dfget/core/downloader"
)

// Each kind of failure, through afterP2P (and the source when it takes
// over) and report: the reason printed, the exit status and the line.
func TestBackSourceReason(t *testing.T) {
	errP2P := errors.New("p2p broke")
	errSrc := errors.New("source answered 404")
	noSpace := &downloader.LocalWriteError{Err: fmt.Errorf("write piece 3: %w", syscall.ENOSPC)}
	readOnly := &downloader.LocalWriteError{Err: fmt.Errorf("write piece 3: %w", syscall.EROFS)}
	md5 := fallBack(config.ReasonMd5NotMatch, errors.New("md5 of downloaded file is a, want b"))
	short := fallBack(config.ReasonDownloadError, errors.New("downloaded 1 bytes, want 2"))
	for _, tc := range []struct {
		name     string
		p2p      error // how the P2P attempt ended
		notBS    bool
		source   error // how the source ends, when it is read
		toSource bool
		reason   int
		exit     int
		line     string // the last console line starts so
		error    string // ... and contains this
	}{
		{name: "p2p delivered", reason: 0, exit: 0, line: "download SUCCESS"},
		{name: "a failure without a reason", p2p: errors.New("prepare /home/meta: denied"), reason: 0,
			exit: config.ExitDownloadError, line: "download FAIL(1104)", error: "prepare /home/meta"},
		{name: "register failed, source delivers", p2p: fallBack(config.ReasonRegisterFail, errP2P), toSource: true,
			reason: 1, exit: 0, line: "download SUCCESS"},
		{name: "register failed, source fails", p2p: fallBack(config.ReasonRegisterFail, errP2P), source: errSrc,
			toSource: true, reason: 1, exit: config.ExitDownloadError, line: "download FAIL(1104)", error: "404"},
		{name: "register failed, --notbs", p2p: fallBack(config.ReasonRegisterFail, errP2P), notBS: true,
			reason: 1001, exit: config.ExitDownloadError, line: "download FAIL(1104)",
			error: "p2p broke (--notbs: no fallback to the source)"},
		{name: "--pattern source", p2p: fallBack(config.ReasonUserSpecified, errNoP2P), toSource: true,
			reason: 100, exit: 0, line: "download SUCCESS"},
		{name: "--pattern source --notbs", p2p: fallBack(config.ReasonUserSpecified, errNoP2P), notBS: true,
			reason: 1100, exit: config.ExitDownloadError, line: "download FAIL(1104)",
			error: "p2p download not possible (--notbs"},
		{name: "file: p2p failed", p2p: fileFailure(errP2P), toSource: true, reason: 3, exit: 0,
			line: "download SUCCESS"},
		{name: "file: short", p2p: fileFailure(short), toSource: true, reason: 3, exit: 0, line: "download SUCCESS"},
		{name: "file: md5 mismatch", p2p: fileFailure(md5), toSource: true, reason: 2, exit: 0,
			line: "download SUCCESS"},
		{name: "file: md5 mismatch, --notbs", p2p: fileFailure(md5), notBS: true, reason: 1002,
			exit: config.ExitDownloadError, line: "download FAIL(1104)", error: "md5 of downloaded file"},
		{name: "file: no space", p2p: fileFailure(noSpace), reason: 1004, exit: config.ExitDownloadError,
			line: "download FAIL(1104)", error: "no space left on device (a local write error: no fallback"},
		{name: "file: read-only", p2p: fileFailure(readOnly), reason: 1006, exit: config.ExitDownloadError,
			line: "download FAIL(1104)", error: "read-only file system (a local write error"},
		{name: "file: wrapped write error", p2p: fileFailure(fmt.Errorf("attempt: %w", readOnly)), reason: 1006,
			exit: config.ExitDownloadError, line: "download FAIL(1104)"},
		{name: "stream: p2p failed, source continues", p2p: fallBack(config.ReasonDownloadError, errP2P),
			toSource: true, reason: 3, exit: 0, line: "download SUCCESS"},
		{name: "stream: reader left during the fallback", p2p: fallBack(config.ReasonDownloadError, errP2P),
			source: downloader.ErrConsumerGone, toSource: true, reason: 3, exit: 0, line: "download STOPPED"},
		{name: "stream: reader left", p2p: downloader.ErrConsumerGone, reason: 0, exit: 0, line: "download STOPPED"},
		{name: "stream: md5 mismatch, bytes already out", p2p: checkStream(4, 4, "aa", "bb"), reason: 2,
			exit: config.ExitDownloadError, line: "download FAIL(1104)", error: "md5 of the stream is aa, want bb"},
		{name: "stream: short", p2p: checkStream(3, 4, "", ""), reason: 0, exit: config.ExitDownloadError,
			line: "download FAIL(1104)", error: "streamed 3 bytes, want 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, err, toSource := afterP2P(tc.p2p, tc.notBS)
			if toSource != tc.toSource {
				t.Fatalf("to source: %v, want %v", toSource, tc.toSource)
			}
			if toSource {
				err = tc.source
			}
			var console bytes.Buffer
			log := logrus.New()
			log.SetOutput(io.Discard)
			d := &Download{io: IO{Console: &console}, log: log}
			exit := d.report(reason, err, 1500*time.Millisecond)
			line := console.String()
			if reason != tc.reason || exit != tc.exit || !strings.HasPrefix(line, tc.line+" cost:1.500s") ||
				!strings.Contains(line, fmt.Sprintf(" reason:%d", tc.reason)) || !strings.Contains(line, tc.error) {
				t.Fatalf("reason %d, exit %d, line %q; want reason %d, exit %d, %q ... %q",
					reason, exit, line, tc.reason, tc.exit, tc.line, tc.error)
			}
		})
	}
}

// The printed FAIL codes are the v1 result codes; the exit statuses are
// those codes modulo 256.
func TestFailCodes(t *testing.T) {
	if config.ExitPrepare != 77 || config.ExitDownloadError != 80 {
		t.Fatalf("exit statuses %d, %d; want 77, 80", config.ExitPrepare, config.ExitDownloadError)
	}
}
