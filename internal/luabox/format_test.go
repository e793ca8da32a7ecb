package luabox

import (
	"strings"
	"testing"
)

// quotedLen must be exactly what appendQuoted writes: format checks the
// size of a %q result with it before building the result.
func TestQuotedLenIsWhatAppendQuotedWrites(t *testing.T) {
	var every strings.Builder
	for b := range 256 {
		every.WriteByte(byte(b))
	}
	for _, s := range []string{"", "plain", `"\`, "\n\r\x00", "\x00\x00x", every.String(), strings.Repeat("a\"\\\n\r\x00é", 100)} {
		if got, want := quotedLen(s), len(appendQuoted(nil, s)); got != want {
			t.Errorf("quotedLen(%.20q) = %d, appendQuoted writes %d", s, got, want)
		}
	}
}
