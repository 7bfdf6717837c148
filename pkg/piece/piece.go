// Package piece is the one implementation of the Dragonfly 1.x wrapped piece
// format used on the supernode's disk and on the wire between all parties:
// a 4-byte big-endian header, the content, and a 1-byte tail 0x7F. It also
// holds the piece-size rule and the arithmetic between piece numbers, wrapped
// ranges and content offsets. The CDN, the downloader, the uploader and the
// tests all use it, so the format is defined exactly once.
package piece

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const (
	// HeadSize is the length of the piece header.
	HeadSize = 4
	// WrapSize is header plus tail: what wrapping adds to each piece.
	WrapSize = 5
	// TailChar ends every wrapped piece.
	TailChar = 0x7F

	mib = 1 << 20
	// DefaultSize is the wrapped piece size of files up to 200 MiB and of
	// files of unknown length.
	DefaultSize = 4 * mib
	// MaxSize caps the wrapped piece size.
	MaxSize = 15 * mib
	// maxContent is what the 24-bit length field of the header can carry.
	maxContent = 1<<24 - 1
)

// ErrMalformed reports a wrapped piece whose header or tail is wrong.
var ErrMalformed = errors.New("malformed piece")

// ComputeSize returns the wrapped piece size for a source of the given
// length, by the Dragonfly 1.x rule: 4 MiB up to 200 MiB (or unknown length),
// then one more MiB per 100 MiB, capped at 15 MiB.
func ComputeSize(length int64) int32 {
	if length <= 200*mib {
		return DefaultSize
	}
	size := int64(DefaultSize) + (length/(100*mib)-2)*mib
	if size > MaxSize {
		size = MaxSize
	}
	return int32(size)
}

// ContentSize is the number of source bytes carried by a full piece.
func ContentSize(pieceSize int32) int64 { return int64(pieceSize) - WrapSize }

// Count returns how many pieces a source of the given length has. A
// zero-length source has one empty piece; an unknown length (<0) gives 0.
func Count(length int64, pieceSize int32) int {
	if length < 0 {
		return 0
	}
	if length == 0 {
		return 1
	}
	c := ContentSize(pieceSize)
	return int((length + c - 1) / c)
}

// WrappedLength is the size of the wrapped file for a source of the given
// length: every piece gains WrapSize bytes.
func WrappedLength(length int64, pieceSize int32) int64 {
	if length < 0 {
		return -1
	}
	return length + int64(Count(length, pieceSize))*WrapSize
}

// UnwrappedLength inverts WrappedLength: the source length behind a
// wrapped file of the given size (v1's finish reports the wrapped one).
// Every piece but the last fills pieceSize, so the piece count is the
// wrapped size over pieceSize, rounded up. Negative in, -1 out.
func UnwrappedLength(wrapped int64, pieceSize int32) int64 {
	if wrapped < 0 || pieceSize <= WrapSize {
		return -1
	}
	n := (wrapped + int64(pieceSize) - 1) / int64(pieceSize)
	return wrapped - n*WrapSize
}

// ContentOffset is where piece num starts in the plain (unwrapped) file.
func ContentOffset(num int, pieceSize int32) int64 {
	return int64(num) * ContentSize(pieceSize)
}

// ContentLength is the number of content bytes in piece num of a source of
// the given length.
func ContentLength(num int, length int64, pieceSize int32) int64 {
	start := ContentOffset(num, pieceSize)
	n := length - start
	if c := ContentSize(pieceSize); n > c {
		n = c
	}
	if n < 0 {
		return 0
	}
	return n
}

// header is the 4-byte header of a piece with contentLen content bytes.
// Readers use only the low 24 bits; the piece size rides in the top bits as
// in Dragonfly 1.x.
func header(contentLen int64, pieceSize int32) [HeadSize]byte {
	var h [HeadSize]byte
	binary.BigEndian.PutUint32(h[:], uint32(contentLen)|uint32(pieceSize)<<4)
	return h
}

// Wrap appends the wrapped form of content to dst and returns it.
func Wrap(dst, content []byte, pieceSize int32) []byte {
	h := header(int64(len(content)), pieceSize)
	dst = append(dst, h[:]...)
	dst = append(dst, content...)
	return append(dst, TailChar)
}

// WrapInPlace wraps the n content bytes a reader put at buf[HeadSize:]:
// it writes the header before them and the tail after, and returns the
// wrapped piece buf[:n+WrapSize]. It lets a writer read the source straight
// into the buffer it writes, with no copy; buf must hold n+WrapSize bytes.
func WrapInPlace(buf []byte, n int, pieceSize int32) []byte {
	wrapped := buf[:n+WrapSize]
	h := header(int64(n), pieceSize)
	copy(wrapped, h[:])
	wrapped[len(wrapped)-1] = TailChar
	return wrapped
}

// WriteWrapped writes a wrapped piece of n content bytes to w: the header,
// then whatever content writes to w (it must write exactly n bytes), then
// the tail. content gets w itself, so a server can send the bytes from a
// file with sendfile instead of through a buffer. It stops at the first
// error.
func WriteWrapped(w io.Writer, n int64, pieceSize int32, content func(io.Writer) error) error {
	h := header(n, pieceSize)
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("write piece header: %w", err)
	}
	if err := content(w); err != nil {
		return err
	}
	if _, err := w.Write([]byte{TailChar}); err != nil {
		return fmt.Errorf("write piece tail: %w", err)
	}
	return nil
}

// Unwrap checks a wrapped piece's header and tail and returns its content, a
// sub-slice of wrapped. Unlike Dragonfly 1.x, which stripped five bytes
// blindly, a length or tail mismatch is an error: a truncated piece must
// never reach a file.
func Unwrap(wrapped []byte) ([]byte, error) {
	if len(wrapped) < WrapSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the wrapper", ErrMalformed, len(wrapped))
	}
	n := int(binary.BigEndian.Uint32(wrapped[:HeadSize]) & maxContent)
	if n != len(wrapped)-WrapSize {
		return nil, fmt.Errorf("%w: header says %d content bytes, got %d", ErrMalformed, n, len(wrapped)-WrapSize)
	}
	if wrapped[len(wrapped)-1] != TailChar {
		return nil, fmt.Errorf("%w: bad tail byte 0x%02x", ErrMalformed, wrapped[len(wrapped)-1])
	}
	return wrapped[HeadSize : len(wrapped)-1], nil
}

// Md5Hex is the lowercase hex md5 of b.
func Md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// Md5Value is the pieceMd5 string of a wrapped piece: "<md5 hex>:<length>".
func Md5Value(wrapped []byte) string {
	return Md5Hex(wrapped) + ":" + strconv.Itoa(len(wrapped))
}

// Range is the wrapped-file byte range "start-end" (inclusive) of piece num,
// clipped to the wrapped file length when it is known (wrappedLen >= 0).
func Range(num int, pieceSize int32, wrappedLen int64) string {
	start := int64(num) * int64(pieceSize)
	end := start + int64(pieceSize) - 1
	if wrappedLen >= 0 && end > wrappedLen-1 {
		end = wrappedLen - 1
	}
	return strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end, 10)
}

// ParseRange parses "start-end" (inclusive, both required, start <= end).
func ParseRange(s string) (start, end int64, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("invalid range %q: want start-end", s)
	}
	start, err = strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, fmt.Errorf("invalid range %q: bad start", s)
	}
	end, err = strconv.ParseInt(b, 10, 64)
	if err != nil || end < start {
		return 0, 0, fmt.Errorf("invalid range %q: bad end", s)
	}
	return start, end, nil
}

// NumFromRange returns the piece number of a wrapped range: start divided by
// the piece size. pieceSize must be the task's wrapped piece size; unlike
// Dragonfly 1.x, the range length is not used, so the short last piece maps
// correctly.
func NumFromRange(s string, pieceSize int32) (int, error) {
	start, _, err := ParseRange(s)
	if err != nil {
		return 0, err
	}
	if pieceSize <= 0 {
		return 0, fmt.Errorf("invalid piece size %d", pieceSize)
	}
	if start%int64(pieceSize) != 0 {
		return 0, fmt.Errorf("range %q does not start on a piece boundary", s)
	}
	return int(start / int64(pieceSize)), nil
}
