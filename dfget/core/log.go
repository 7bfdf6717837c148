package core

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
)

// newLogger logs to dir/name, and to stderr too with console.
func newLogger(dir, name string, verbose, console bool) (*logrus.Logger, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	l := logrus.New()
	l.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
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
func NewLogger(dir, name string, verbose, console bool) (*logrus.Logger, func(), error) {
	return newLogger(dir, name, verbose, console)
}
