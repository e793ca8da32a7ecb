package luabox

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// A string.format, string.gsub or JSON encoding whose result cannot fit
// under MaxString fails before it copies the piece that would take it past:
// they used to append first and check after, building up to twice the
// limit (eight times with %q of zero bytes, six with JSON escapes) for
// nothing.
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
			allocated := allocatedBy(func() {
				L.Push(fn)
				err = L.PCall(0, 1, nil)
			})
			if err == nil || !strings.Contains(err.Error(), "result larger than the limit") {
				t.Fatalf("got %v, want the size limit's error", err)
			}
			if allocated > tc.maxAlloc {
				t.Fatalf("allocated %d bytes before refusing (at most %d)", allocated, tc.maxAlloc)
			}
		})
	}
	// Control characters encode to six bytes each: a fifth of the limit of
	// them, as a value or as a key, encodes past it.
	controls := lua.LString(strings.Repeat("\x01", MaxString/5))
	for name, build := range map[string]func(L *lua.LState) lua.LValue{
		"JSON: a string that escapes past the limit": func(L *lua.LState) lua.LValue {
			t := L.NewTable()
			t.Append(controls)
			return t
		},
		"JSON: a key that escapes past the limit": func(L *lua.LState) lua.LValue {
			t := L.NewTable()
			t.RawSetString(string(controls), lua.LTrue)
			return t
		},
	} {
		t.Run(name, func(t *testing.T) {
			L := NewState()
			defer L.Close()
			c := NewConverter(L)
			v := build(L)
			var err error
			allocated := allocatedBy(func() { _, err = c.Encode(nil, v) })
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			if allocated > MaxString/4 {
				t.Fatalf("allocated %d bytes before refusing (at most %d)", allocated, MaxString/4)
			}
		})
	}
	L := NewState()
	defer L.Close()
	if out, err := NewConverter(L).Encode(nil, lua.LString(strings.Repeat("\x01", MaxString/7))); err != nil || len(out) != 6*(MaxString/7)+2 {
		t.Fatalf("a string whose escapes fit: %d bytes, %v", len(out), err)
	}
	// What fits is still built.
	got, err := eval(t, `return #string.format("%s", string.rep("x", 1024)) .. "|" .. #string.format("%q", "\0") .. "|" .. #string.gsub(string.rep("x", 1024), "^(.*)$", "%1%1")`)
	if err != nil || got != "1024|6|2048" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// allocatedBy returns the bytes of heap f allocated.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
