package luabox

import (
	"encoding/binary"
	"strings"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// The string functions that can run long or build large results, replacing
// gopher-lua's: pattern matching with a step budget and a recursion limit
// (gopher-lua's matcher recurses once per subject character and its gsub
// rebuilds the result once per match), rep and format with a size limit.

// stringStart converts a Lua start position (1-based, negative from the
// end) into a byte offset within [0, n].
func stringStart(pos, n int) int {
	if pos < 0 {
		pos += n + 1
	}
	if pos < 1 {
		return 0
	}
	if pos-1 > n {
		return n
	}
	return pos - 1
}

// findAux is string.find (find) and string.match (!find).
func findAux(L *lua.LState, find bool) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	init := stringStart(L.OptInt(3, 1), len(src))
	if find && (lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(pat, patternSpecials)) {
		if i := strings.Index(src[init:], pat); i >= 0 {
			L.Push(lua.LNumber(init + i + 1))
			L.Push(lua.LNumber(init + i + len(pat)))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	what := "string.match"
	if find {
		what = "string.find"
	}
	anchor := strings.HasPrefix(pat, "^")
	if anchor {
		pat = pat[1:]
	}
	m := newMatcher(L, newBudget(L, what, MaxPatternSteps), src, pat)
	for s := init; s <= len(src); s++ {
		m.reset()
		if e := m.match(s, 0); e != -1 {
			if find {
				L.Push(lua.LNumber(s + 1))
				L.Push(lua.LNumber(e))
				return m.pushCaptures(-1, -1, false) + 2
			}
			return m.pushCaptures(s, e, true)
		}
		if anchor {
			break
		}
	}
	L.Push(lua.LNil)
	return 1
}

func strFind(L *lua.LState) int  { return findAux(L, true) }
func strMatch(L *lua.LState) int { return findAux(L, false) }

// strGmatch returns an iterator that finds the next match each time it is
// called, rather than every match up front.
func strGmatch(L *lua.LState) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	b := newBudget(L, "string.gmatch", MaxPatternSteps)
	m := newMatcher(L, b, src, pat)
	pos := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		m.L, b.L = L, L
		b.used, b.next = 0, checkEvery
		for s := pos; s <= len(src); s++ {
			m.reset()
			if e := m.match(s, 0); e != -1 {
				pos = e
				if e == s {
					pos++ // an empty match: move on at least one position
				}
				return m.pushCaptures(s, e, true)
			}
		}
		pos = len(src) + 1
		return 0
	}))
	return 1
}

// strGsub builds its result in one buffer, in time linear in its size, and
// refuses to build one larger than MaxString.
func strGsub(L *lua.LState) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTFunction, lua.LTTable:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := L.OptInt(4, len(src)+1)
	anchor := strings.HasPrefix(pat, "^")
	if anchor {
		pat = pat[1:]
	}
	b := newBudget(L, "string.gsub", MaxPatternSteps)
	m := newMatcher(L, b, src, pat)
	var out strings.Builder
	s, n := 0, 0
scan:
	for n < maxN {
		m.reset()
		e := m.match(s, 0)
		if e != -1 {
			n++
			gsubValue(L, m, &out, s, e, repl)
		}
		switch {
		case e != -1 && e > s:
			s = e
		case s < len(src):
			out.WriteByte(src[s])
			s++
		default:
			break scan
		}
		b.spend(1)
		checkSize(L, "string.gsub", out.Len())
		if anchor {
			break
		}
	}
	writeChecked(L, &out, src[s:])
	L.Push(lua.LString(out.String()))
	L.Push(lua.LNumber(n))
	return 2
}

// gsubValue appends the replacement of the match from s to e.
func gsubValue(L *lua.LState, m *matcher, out *strings.Builder, s, e int, repl lua.LValue) {
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		gsubString(m, out, s, e, r.String())
		return
	case *lua.LFunction:
		L.Push(r)
		n := m.pushCaptures(s, e, true)
		L.Call(n, 1)
		v = L.Get(-1)
		L.Pop(1)
	case *lua.LTable:
		v = L.GetTable(r, m.captureValue(0, s, e))
	}
	switch v := v.(type) {
	case *lua.LNilType:
		writeChecked(L, out, m.src[s:e])
	case lua.LBool:
		if v {
			L.RaiseError("invalid replacement value (a boolean)")
		}
		writeChecked(L, out, m.src[s:e])
	case lua.LString, lua.LNumber:
		writeChecked(L, out, v.String())
	default:
		L.RaiseError("invalid replacement value (a %s)", v.Type())
	}
}

// gsubString appends a replacement string with %0-%9 expanded.
func gsubString(m *matcher, out *strings.Builder, s, e int, repl string) {
	checkSize(m.L, "string.gsub", out.Len()+len(repl))
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c != patternEscape || i+1 == len(repl) {
			out.WriteByte(c)
			continue
		}
		i++
		switch d := repl[i]; {
		case d == '0':
			writeChecked(m.L, out, m.src[s:e])
		case d >= '1' && d <= '9':
			writeChecked(m.L, out, m.captureValue(int(d-'1'), s, e).String())
		default:
			out.WriteByte(d)
			checkSize(m.L, "string.gsub", out.Len())
		}
	}
}

// writeChecked appends s to gsub's result, refusing before the copy when
// the result would pass MaxString (a whole match or the rest of the
// subject can be as large as the limit itself).
func writeChecked(L *lua.LState, out *strings.Builder, s string) {
	checkSize(L, "string.gsub", out.Len()+len(s))
	out.WriteString(s)
}

// strByte is string.byte as Lua 5.1 defines it, bounded to MaxUnpack
// results. gopher-lua's returned every byte of the string when j was left
// out (Lua returns s[i] alone), so string.byte(payload) pushed a value per
// byte until its registry overflowed.
func strByte(L *lua.LState) int {
	s := L.CheckString(1)
	i := relativePosition(L.OptInt(2, 1), len(s))
	j := relativePosition(L.OptInt(3, i), len(s))
	i = max(i, 1)
	j = min(j, len(s))
	if i > j {
		return 0
	}
	n := j - i + 1
	if n > MaxUnpack {
		L.RaiseError("string.byte: too many results (more than %d)", MaxUnpack)
	}
	for k := i; k <= j; k++ {
		L.Push(lua.LNumber(s[k-1]))
	}
	return n
}

// relativePosition turns a negative string position into one counted from
// the end, as Lua 5.1's posrelat does (never below 0).
func relativePosition(pos, length int) int {
	if pos < 0 {
		pos += length + 1
	}
	return max(pos, 0)
}

// strRep is string.rep with the result size checked before it is built.
func strRep(L *lua.LState) int {
	s, n := L.CheckString(1), L.CheckInt(2)
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	if n > MaxString/len(s) {
		L.RaiseError("string.rep: result of %d × %d bytes exceeds the limit of %d", len(s), n, MaxString)
	}
	L.Push(lua.LString(strings.Repeat(s, n)))
	return 1
}

// strUpper and strLower are string.upper and string.lower as Lua defines
// them: every byte through toupper or tolower of the C locale, so only the
// ASCII letters change. gopher-lua's map Unicode (strings.ToUpper), which
// turns every byte that is not UTF-8 into U+FFFD, so a binary string did not
// survive the round trip; byte by byte is also several times faster.
func strUpper(L *lua.LState) int { return mapASCIICase(L, 'a', 'z') }
func strLower(L *lua.LState) int { return mapASCIICase(L, 'A', 'Z') }

// mapASCIICase flips the case of the bytes from..to of its string argument,
// eight bytes at a time. A string with none of them is returned as it is,
// without a copy.
func mapASCIICase(L *lua.LState, from, to byte) int {
	s := L.CheckString(1)
	i := 0
	for i+8 <= len(s) && caseMask(binary.LittleEndian.Uint64([]byte(s[i:i+8])), from, to) == 0 {
		i += 8
	}
	for i < len(s) && (s[i] < from || s[i] > to) {
		i++
	}
	if i == len(s) {
		if v, ok := L.Get(1).(lua.LString); ok {
			L.Push(v)
		} else {
			L.Push(lua.LString(s)) // a number, as a string
		}
		return 1
	}
	b := make([]byte, len(s))
	copy(b, s[:i])
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64([]byte(s[i : i+8]))
		binary.LittleEndian.PutUint64(b[i:], w^caseMask(w, from, to)>>2)
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c >= from && c <= to {
			c ^= 'a' - 'A'
		}
		b[i] = c
	}
	L.Push(lua.LString(unsafe.String(unsafe.SliceData(b), len(b)))) // b is not written again
	return 1
}

// caseMask has the high bit of each byte of w that lies in from..to (both
// ASCII, from > 0), and no other bit: a byte's high bit survives adding
// 0x80-from to its low seven bits only if it is at least from, and adding
// 0x80-to-1 only if it is above to. Shifted right by two it is the case bit
// (0x20) of those bytes.
func caseMask(w uint64, from, to byte) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low := w &^ highs
	atLeastFrom := low + ones*uint64(0x80-from)
	aboveTo := low + ones*uint64(0x80-to-1)
	return atLeastFrom &^ aboveTo &^ w & highs
}
