package luabox

import (
	"runtime"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// A string.format or string.gsub whose result cannot fit under MaxString
// fails before it copies the piece that would take it past: both used to
// append first and check after, building up to twice the limit (eight times
// with %q of zero bytes) for nothing.
func TestOversizedResultsAreRefusedBeforeTheyAreBuilt(t *testing.T) {
	cases := []struct {
		name, code string
		maxAlloc   uint64 // what the refused call may allocate
	}{
		{"%s after %s", `return string.format("%s%s", huge, huge)`, MaxString + MaxString/4}, // the first fits
		{"%s of a string one byte too many", `return string.format("x%s", huge)`, MaxString / 4},
		{"%q that escapes past the limit", `return string.format("%q", zeros)`, MaxString / 4},
		{"gsub: the rest of the subject", `return string.gsub(huge, "^x", "yy")`, MaxString / 4},
		{"gsub: a capture twice", `return string.gsub(huge, "^(.*)$", "%1%1")`, MaxString + MaxString/4}, // the first fits
		{"gsub: the match, unreplaced", `return string.gsub("x" .. huge, "^x(.*)$", function() return nil end)`, MaxString + MaxString/4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			L := NewState()
			defer L.Close()
			L.SetGlobal("huge", lua.LString(strings.Repeat("x", MaxString)))
			L.SetGlobal("zeros", lua.LString(strings.Repeat("\x00", MaxString/3)))
			Seal(L)
			fn, err := L.LoadString(tc.code)
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			L.Push(fn)
			err = L.PCall(0, 1, nil)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "result larger than the limit") {
				t.Fatalf("got %v, want the size limit's error", err)
			}
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > tc.maxAlloc {
				t.Fatalf("allocated %d bytes before refusing (at most %d)", allocated, tc.maxAlloc)
			}
		})
	}
	// What fits is still built.
	got, err := eval(t, `return #string.format("%s", string.rep("x", 1024)) .. "|" .. #string.format("%q", "\0") .. "|" .. #string.gsub(string.rep("x", 1024), "^(.*)$", "%1%1")`)
	if err != nil || got != "1024|6|2048" {
		t.Fatalf("got %q, %v", got, err)
	}
}
