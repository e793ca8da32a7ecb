package protocol

import (
	"encoding/binary"
	"math/bits"
)

// plainStringByte marks the bytes that stand for themselves inside a JSON
// string: printable ASCII but the quote and the backslash.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Strings are scanned once per frame and encoded once per reply, and most of
// their bytes are plain: plainEnd and plainEndString skip them eight at a
// time.

// plainEnd returns the index of the first byte of b at or after i that is
// not plain (see plainStringByte), or len(b).
func plainEnd(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := specialBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && plainStringByte[b[i]] {
		i++
	}
	return i
}

// plainEndString is plainEnd of a string.
func plainEndString(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if m := specialBytes(w); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(s) && plainStringByte[s[i]] {
		i++
	}
	return i
}

// specialBytes has a high bit set in the bytes of w (little-endian) that are
// not plain, and its lowest set bit is exactly in the first such byte: the
// classic tests for a byte below 0x20 (subtracting borrows into its high
// bit) and for a zero byte (after xor with '"' and with '\\') flag every
// byte that matches and none below it (a borrow only moves upwards), and a
// byte of 0x80 or more is flagged by its own high bit.
func specialBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := (w - ones*0x20) &^ w
	quote := w ^ ones*'"'
	backslash := w ^ ones*'\\'
	zero := (quote-ones)&^quote | (backslash-ones)&^backslash
	return (below | zero | w) & highs
}
