package protocol

import (
	"math/rand/v2"
	"testing"
)

// TestPlainEndMatchesTheByteTest checks the eight-at-a-time scans against
// plainStringByte byte by byte: every byte value in every lane of a word,
// then random text with special bytes at random places, as bytes and as a
// string.
func TestPlainEndMatchesTheByteTest(t *testing.T) {
	check := func(s []byte, i int) {
		t.Helper()
		want := i
		for want < len(s) && plainStringByte[s[want]] {
			want++
		}
		if got := plainEnd(s, i); got != want {
			t.Fatalf("plainEnd(%q, %d) = %d, want %d", s, i, got, want)
		}
		if got := plainEndString(string(s), i); got != want {
			t.Fatalf("plainEndString(%q, %d) = %d, want %d", s, i, got, want)
		}
	}
	for lane := 0; lane < 8; lane++ {
		for c := 0; c < 256; c++ {
			for d := 0; d < 256; d += 17 { // a second byte above it, special or not
				s := []byte("abcdefghABCDEFGH")
				s[lane] = byte(c)
				s[(lane+1+d%7)%8] = byte(d)
				check(s, 0)
				s[lane+8] = byte(c)
				check(s, 1)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	special := []byte{'"', '\\', 0, 0x1f, 0x7f, 0x80, 0xc3, 0xff, ' ', '!', '#', '[', ']'}
	for range 20000 {
		s := make([]byte, rng.IntN(40))
		for i := range s {
			s[i] = byte('a' + rng.IntN(26))
		}
		for range rng.IntN(3) {
			if len(s) > 0 {
				s[rng.IntN(len(s))] = special[rng.IntN(len(special))]
			}
		}
		check(s, 0)
		if len(s) > 0 {
			check(s, rng.IntN(len(s)))
		}
	}
}
