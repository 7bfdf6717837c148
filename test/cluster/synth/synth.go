// Package synth generates deterministic synthetic file content and serves it
// over HTTP, so that benchmarks can use files of any size (a few GiB
// included) without storing them, and verify every byte a client wrote.
//
// A file is identified by its name and size; its bytes are a pure function of
// both, so the origin, the harness and the verifier agree without sharing
// state.
package synth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// blockSize is the period of the base pattern. Every block is the pattern
// XORed with a per-block key, so a piece written at the wrong offset never
// matches by accident.
const blockSize = 64 << 10

const wordsPerBlock = blockSize / 8

// Content is the synthetic content of one file. It implements io.ReaderAt,
// io.Reader and io.Seeker (the latter two for http.ServeContent).
type Content struct {
	size    int64
	seed    uint64
	pattern []uint64
	off     int64
}

// New returns the content of the file called name with the given size.
func New(name string, size int64) (*Content, error) {
	if size < 0 {
		return nil, fmt.Errorf("synth: negative size %d", size)
	}
	sum := sha256.Sum256([]byte(name))
	seed := binary.LittleEndian.Uint64(sum[:8])
	c := &Content{size: size, seed: seed, pattern: make([]uint64, wordsPerBlock)}
	s := seed
	for i := range c.pattern {
		s, c.pattern[i] = splitmix(s)
	}
	return c, nil
}

// splitmix is one step of the SplitMix64 generator: it returns the next state
// and the output for the current one.
func splitmix(s uint64) (uint64, uint64) {
	s += 0x9e3779b97f4a7c15
	z := s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return s, z ^ (z >> 31)
}

// Size is the length of the content in bytes.
func (c *Content) Size() int64 { return c.size }

// ETag is a strong entity tag that changes with the name and the size.
func (c *Content) ETag() string { return fmt.Sprintf(`"%016x-%d"`, c.seed, c.size) }

// ReadAt fills p with the content at off. It returns io.EOF when p reaches
// past the end, like a file.
func (c *Content) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("synth: negative offset")
	}
	if off >= c.size {
		return 0, io.EOF
	}
	want := len(p)
	if rem := c.size - off; int64(want) > rem {
		want = int(rem)
	}
	var word [8]byte
	n := 0
	for n < want {
		pos := off + int64(n)
		block := pos / blockSize
		_, key := splitmix(c.seed ^ uint64(block)*0x2545f4914f6cdd1d)
		in := int(pos % blockSize)
		for in < blockSize && n < want {
			w := in / 8
			b := in % 8
			if b == 0 && want-n >= 8 {
				binary.LittleEndian.PutUint64(p[n:], c.pattern[w]^key)
				n += 8
				in += 8
				continue
			}
			binary.LittleEndian.PutUint64(word[:], c.pattern[w]^key)
			k := copy(p[n:want], word[b:])
			n += k
			in += k
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read reads from the current offset.
func (c *Content) Read(p []byte) (int, error) {
	n, err := c.ReadAt(p, c.off)
	c.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek sets the offset for the next Read.
func (c *Content) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = c.off + offset
	case io.SeekEnd:
		abs = c.size + offset
	default:
		return 0, fmt.Errorf("synth: bad whence %d", whence)
	}
	if abs < 0 {
		return 0, errors.New("synth: negative position")
	}
	c.off = abs
	return abs, nil
}

// Verify reads r to its end and checks that it holds exactly the content of
// the file called name with the given size. The error names the first
// differing offset.
func Verify(r io.Reader, name string, size int64) error {
	c, err := New(name, size)
	if err != nil {
		return err
	}
	const chunk = 1 << 20
	got := make([]byte, chunk)
	want := make([]byte, chunk)
	br := bufio.NewReaderSize(r, chunk)
	var off int64
	for {
		n, rerr := io.ReadFull(br, got)
		if n > 0 {
			if off+int64(n) > size {
				return fmt.Errorf("content longer than %d bytes", size)
			}
			if _, err := c.ReadAt(want[:n], off); err != nil && err != io.EOF {
				return err
			}
			if !bytes.Equal(got[:n], want[:n]) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				return fmt.Errorf("content differs at byte %d", off+int64(i))
			}
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read at %d: %w", off, rerr)
		}
	}
	if off != size {
		return fmt.Errorf("content is %d bytes, want %d", off, size)
	}
	return nil
}
