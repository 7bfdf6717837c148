package core

import (
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/pkg/logfile"
)

// newLogger logs to dir/name, and to stderr too with console.
func newLogger(dir, name string, rot logfile.Rotation, verbose, console bool) (*logrus.Logger, func(), error) {
	f, err := logfile.Open(filepath.Join(dir, name), rot)
	if err != nil {
		return nil, nil, err
	}
	l := logrus.New()
	l.SetFormatter(logfile.Formatter())
	var out io.Writer = f
	if console {
		out = io.MultiWriter(f, os.Stderr)
	}
	l.SetOutput(out)
	l.SetLevel(logrus.InfoLevel)
	if verbose {
		l.SetLevel(logrus.DebugLevel)
	}
	return l, func() { f.Close() }, nil
}

// NewLogger is newLogger for the peer server command.
func NewLogger(dir, name string, rot logfile.Rotation, verbose, console bool) (*logrus.Logger, func(), error) {
	return newLogger(dir, name, rot, verbose, console)
}
