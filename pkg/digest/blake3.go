package digest

import (
	"math/bits"

	"lukechampine.com/blake3/guts"
)

// blake3Hasher is BLAKE3-256 computed in the calling goroutine. The
// library's own Hasher starts goroutines for every Write of more than one
// chunk and for every 16 KiB of a large one; each new goroutine then grows
// its stack for the SIMD kernel's large frame. Pieces are hashed by
// long-lived goroutines, several at once, so that parallelism only cost
// CPU. This hasher feeds the same kernel (guts.CompressBuffer, 16 chunks
// at a time) and builds the same tree, sequentially.
type blake3Hasher struct {
	// stack holds the chaining values of complete subtrees, at most one
	// per height; counter is the number of chunks they cover, whose bits
	// say which heights are occupied.
	stack   [64][8]uint32
	counter uint64
	buf     [guts.MaxSIMD * guts.ChunkSize]byte
	buflen  int
}

// bufHeight is the height of the subtree of one full buf (16 chunks).
const bufHeight = 4

func newBlake3() *blake3Hasher { return &blake3Hasher{} }

func (h *blake3Hasher) push(cv [8]uint32, height int) {
	i := height
	for h.counter&(1<<i) != 0 {
		cv = guts.ChainingValue(guts.ParentNode(h.stack[i], cv, &guts.IV, 0))
		i++
	}
	h.stack[i] = cv
	h.counter += 1 << height
}

// Write hashes p. A full buffer is compressed only once more bytes follow:
// the last chunk of the input must stay for Sum, which flags it as the
// root's.
func (h *blake3Hasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if h.buflen == len(h.buf) {
			h.push(guts.ChainingValue(guts.CompressBuffer(&h.buf, len(h.buf), &guts.IV, h.counter, 0)), bufHeight)
			h.buflen = 0
		}
		// Whole blocks of p, straight from p: no copy through buf.
		for h.buflen == 0 && len(p) > len(h.buf) {
			block := (*[guts.MaxSIMD * guts.ChunkSize]byte)(p)
			h.push(guts.ChainingValue(guts.CompressBuffer(block, len(block), &guts.IV, h.counter, 0)), bufHeight)
			p = p[len(block):]
		}
		c := copy(h.buf[h.buflen:], p)
		h.buflen += c
		p = p[c:]
	}
	return n, nil
}

// Sum appends the digest of everything written; the state is unchanged.
func (h *blake3Hasher) Sum(b []byte) []byte {
	t := *h
	// The buffered chunks but the last go into the tree one by one; the
	// last one is the start of the root's path.
	last := 0
	if t.buflen > 0 {
		last = (t.buflen - 1) / guts.ChunkSize * guts.ChunkSize
	}
	for off := 0; off < last; off += guts.ChunkSize {
		t.push(guts.ChainingValue(guts.CompressChunk(t.buf[off:off+guts.ChunkSize], &guts.IV, t.counter, 0)), 0)
	}
	n := guts.CompressChunk(t.buf[last:t.buflen], &guts.IV, t.counter, 0)
	for i := bits.TrailingZeros64(t.counter); i < bits.Len64(t.counter); i++ {
		if t.counter&(1<<i) != 0 {
			n = guts.ParentNode(t.stack[i], guts.ChainingValue(n), &guts.IV, 0)
		}
	}
	n.Flags |= guts.FlagRoot
	out := guts.WordsToBytes(guts.CompressNode(n))
	return append(b, out[:32]...)
}

func (h *blake3Hasher) Reset()         { h.counter, h.buflen = 0, 0 }
func (h *blake3Hasher) Size() int      { return 32 }
func (h *blake3Hasher) BlockSize() int { return 64 }
