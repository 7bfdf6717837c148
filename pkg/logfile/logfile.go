// Package logfile opens the daemons' and dfget's log files with size-based
// rotation (the v1 `logConfig{maxSize,maxBackups}` keys), so a long-running
// supernode or peer server cannot fill its disk with logs.
package logfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"gopkg.in/natefinch/lumberjack.v2"
)

// Defaults when a Rotation field is zero: 40 MB per file, one rotated file.
const (
	DefaultMaxSizeMB  = 40
	DefaultMaxBackups = 1
)

// Rotation is the v1 logConfig block.
type Rotation struct {
	// MaxSize is the size in megabytes at which the file is rotated.
	MaxSize int `yaml:"maxSize"`
	// MaxBackups is how many rotated files are kept.
	MaxBackups int `yaml:"maxBackups"`
}

// Validate rejects negative values.
func (r Rotation) Validate() error {
	if r.MaxSize < 0 || r.MaxBackups < 0 {
		return fmt.Errorf("logConfig: maxSize (%d) and maxBackups (%d) must not be negative", r.MaxSize, r.MaxBackups)
	}
	return nil
}

// Open creates the directory and opens path for appending, rotating it by
// r. The file is opened now, so a bad path fails here and not at the first
// log line.
func Open(path string, r Rotation) (io.WriteCloser, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	l := &lumberjack.Logger{Filename: path, MaxSize: r.MaxSize, MaxBackups: r.MaxBackups}
	if l.MaxSize == 0 {
		l.MaxSize = DefaultMaxSizeMB
	}
	if l.MaxBackups == 0 {
		l.MaxBackups = DefaultMaxBackups
	}
	if _, err := l.Write(nil); err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return l, nil
}

// Formatter is the text format of every Damselfly log: plain, with
// millisecond timestamps, because reading where a download's time went
// (a piece every few milliseconds) needs more than seconds.
func Formatter() logrus.Formatter {
	return &logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00"}
}
