// Package fsname bounds the file names dfget derives from an output name:
// the task file name the peer server serves and the temp files written
// beside the output. An output name may take all of NAME_MAX (255 bytes);
// a name made from it with a prefix or suffix would then be refused by the
// file system (ENAMETOOLONG) and by the peer server's check.
package fsname

import (
	"path/filepath"
	"unicode/utf8"
)

// MaxBase is the most bytes of an output's base name that go into a
// derived name: with the longest prefix and suffix added (a dot, ".dfget-"
// or ".backsource-" and CreateTemp's random digits, or "-" and the sign),
// the result stays well under NAME_MAX.
const MaxBase = 100

// Base is the base name of path cut to MaxBase bytes, on a UTF-8
// boundary so that the name stays valid text.
func Base(path string) string {
	b := filepath.Base(path)
	if len(b) <= MaxBase {
		return b
	}
	// Cut before the rune that straddles MaxBase, not inside it.
	n := MaxBase
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return b[:n]
}

// TempPattern is the os.CreateTemp pattern of a temp file of the given
// kind beside dst: hidden, and named after dst so a user who finds one
// left behind knows what it was.
func TempPattern(dst, kind string) string {
	return "." + Base(dst) + "." + kind + "-*"
}
