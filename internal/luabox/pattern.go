package luabox

import (
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// Bounds of one pattern-matching call.
const (
	// MaxPatternDepth is how deep the matcher may recurse (C Lua's
	// MAXCCALLS): every capture, '?', '*', '+' and '-' item costs a level,
	// so a long pattern or a backtracking one fails with "pattern too
	// complex" instead of growing a goroutine stack.
	MaxPatternDepth = 200
	// MaxPatternSteps is how much work one find/match/gmatch step/gsub may
	// do, counted in characters compared. The call's deadline is checked
	// every few thousand steps as well, so the budget matters only where no
	// deadline applies.
	MaxPatternSteps = 1 << 28
	// maxCaptures is C Lua's LUA_MAXCAPTURES.
	maxCaptures = 32
)

const (
	capUnfinished = -1
	capPosition   = -2
	patternEscape = '%'
	// patternSpecials are the characters that make a pattern more than a
	// plain substring.
	patternSpecials = "^$*+?.([%-"
)

// matcher runs one Lua 5.1 pattern over one subject. It follows the
// reference implementation (lstrlib.c) with two additions: the recursion
// depth is bounded and every unit of work is charged to a budget that
// checks the call's deadline.
type matcher struct {
	L       *lua.LState
	src     string
	pat     string
	level   int // captures started
	depth   int // recursion levels left
	budget  *budget
	capture [maxCaptures]struct{ init, len int }
}

func newMatcher(L *lua.LState, b *budget, src, pat string) *matcher {
	return &matcher{L: L, src: src, pat: pat, budget: b}
}

// reset prepares a match attempt at a new subject position.
func (m *matcher) reset() {
	m.level = 0
	m.depth = MaxPatternDepth
}

func (m *matcher) errorf(format string, args ...any) {
	m.L.RaiseError("%s", fmt.Sprintf(format, args...))
}

// classEnd returns the index just past the single-character class at p.
func (m *matcher) classEnd(p int) int {
	c := m.pat[p]
	p++
	switch c {
	case patternEscape:
		if p >= len(m.pat) {
			m.errorf("malformed pattern (ends with '%%')")
		}
		return p + 1
	case '[':
		if p < len(m.pat) && m.pat[p] == '^' {
			p++
		}
		for { // look for the closing ']'; the first character is never it
			if p >= len(m.pat) {
				m.errorf("malformed pattern (missing ']')")
			}
			c := m.pat[p]
			p++
			if c == patternEscape && p < len(m.pat) {
				p++ // skip escapes such as '%]'
			}
			if p < len(m.pat) && m.pat[p] == ']' {
				return p + 1
			}
		}
	}
	return p
}

// matchClass reports whether c belongs to the class letter cl (%a, %d, …);
// an upper-case letter is the complement, any other character itself.
func matchClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isAlpha(c)
	case 'c':
		res = c < 32 || c == 127
	case 'd':
		res = c >= '0' && c <= '9'
	case 'l':
		res = c >= 'a' && c <= 'z'
	case 'p':
		res = isPunct(c)
	case 's':
		res = c == ' ' || c >= '\t' && c <= '\r'
	case 'u':
		res = c >= 'A' && c <= 'Z'
	case 'w':
		res = isAlpha(c) || c >= '0' && c <= '9'
	case 'x':
		res = c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f'
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if cl >= 'A' && cl <= 'Z' {
		return !res
	}
	return res
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isPunct(c byte) bool {
	return c > 32 && c < 127 && !isAlpha(c) && !(c >= '0' && c <= '9')
}

// matchBracketClass reports whether c matches the set [ ... ] from the '['
// at p to the ']' at end.
func (m *matcher) matchBracketClass(c byte, p, end int) bool {
	sig := true
	if m.pat[p+1] == '^' {
		sig = false
		p++
	}
	for p++; p < end; p++ {
		switch {
		case m.pat[p] == patternEscape:
			p++
			if matchClass(c, m.pat[p]) {
				return sig
			}
		case m.pat[p+1] == '-' && p+2 < end:
			p += 2
			if m.pat[p-2] <= c && c <= m.pat[p] {
				return sig
			}
		case m.pat[p] == c:
			return sig
		}
	}
	return !sig
}

// singleMatch reports whether the subject byte at s matches the class
// from p to ep.
func (m *matcher) singleMatch(s, p, ep int) bool {
	if s >= len(m.src) {
		return false
	}
	c := m.src[s]
	switch m.pat[p] {
	case '.':
		return true
	case patternEscape:
		return matchClass(c, m.pat[p+1])
	case '[':
		return m.matchBracketClass(c, p, ep-1)
	}
	return m.pat[p] == c
}

// match matches the pattern from p against the subject from s and returns
// the end of the match, or -1.
func (m *matcher) match(s, p int) int {
	m.depth--
	if m.depth <= 0 {
		m.errorf("pattern too complex (more than %d levels of backtracking or captures)", MaxPatternDepth)
	}
	res := m.matchLoop(s, p)
	m.depth++
	return res
}

func (m *matcher) matchLoop(s, p int) int {
	for {
		m.budget.spend(1)
		if p == len(m.pat) {
			return s
		}
		switch m.pat[p] {
		case '(':
			if p+1 < len(m.pat) && m.pat[p+1] == ')' {
				return m.startCapture(s, p+2, capPosition)
			}
			return m.startCapture(s, p+1, capUnfinished)
		case ')':
			return m.endCapture(s, p+1)
		case '$':
			if p+1 == len(m.pat) {
				if s == len(m.src) {
					return s
				}
				return -1
			}
		case patternEscape:
			if p+1 >= len(m.pat) {
				break // classEnd reports the malformed pattern
			}
			switch next := m.pat[p+1]; {
			case next == 'b':
				if s = m.matchBalance(s, p+2); s == -1 {
					return -1
				}
				p += 4
				continue
			case next == 'f':
				p += 2
				if p >= len(m.pat) || m.pat[p] != '[' {
					m.errorf("missing '[' after '%%f' in pattern")
				}
				ep := m.classEnd(p)
				var prev, cur byte
				if s > 0 {
					prev = m.src[s-1]
				}
				if s < len(m.src) {
					cur = m.src[s]
				}
				if m.matchBracketClass(prev, p, ep-1) || !m.matchBracketClass(cur, p, ep-1) {
					return -1
				}
				p = ep
				continue
			case next >= '0' && next <= '9':
				if s = m.matchCapture(s, next); s == -1 {
					return -1
				}
				p += 2
				continue
			}
		}
		ep := m.classEnd(p)
		ok := m.singleMatch(s, p, ep)
		if ep < len(m.pat) {
			switch m.pat[ep] {
			case '?':
				if ok {
					if res := m.match(s+1, ep+1); res != -1 {
						return res
					}
				}
				p = ep + 1
				continue
			case '*':
				return m.maxExpand(s, p, ep)
			case '+':
				if !ok {
					return -1
				}
				return m.maxExpand(s+1, p, ep)
			case '-':
				return m.minExpand(s, p, ep)
			}
		}
		if !ok {
			return -1
		}
		s++
		p = ep
	}
}

func (m *matcher) maxExpand(s, p, ep int) int {
	i := 0
	for m.singleMatch(s+i, p, ep) {
		i++
	}
	m.budget.spend(i)
	for ; i >= 0; i-- {
		if res := m.match(s+i, ep+1); res != -1 {
			return res
		}
	}
	return -1
}

func (m *matcher) minExpand(s, p, ep int) int {
	for {
		if res := m.match(s, ep+1); res != -1 {
			return res
		}
		if !m.singleMatch(s, p, ep) {
			return -1
		}
		s++
	}
}

func (m *matcher) startCapture(s, p, what int) int {
	if m.level >= maxCaptures {
		m.errorf("too many captures")
	}
	m.capture[m.level].init = s
	m.capture[m.level].len = what
	m.level++
	res := m.match(s, p)
	if res == -1 {
		m.level--
	}
	return res
}

func (m *matcher) endCapture(s, p int) int {
	l := -1
	for i := m.level - 1; i >= 0; i-- {
		if m.capture[i].len == capUnfinished {
			l = i
			break
		}
	}
	if l < 0 {
		m.errorf("invalid pattern capture")
	}
	m.capture[l].len = s - m.capture[l].init
	res := m.match(s, p)
	if res == -1 {
		m.capture[l].len = capUnfinished
	}
	return res
}

func (m *matcher) matchBalance(s, p int) int {
	if p+1 >= len(m.pat) {
		m.errorf("missing arguments to '%%b'")
	}
	if s >= len(m.src) || m.src[s] != m.pat[p] {
		return -1
	}
	open, closing := m.pat[p], m.pat[p+1]
	depth := 1
	for i := s + 1; i < len(m.src); i++ {
		switch m.src[i] {
		case closing:
			if depth--; depth == 0 {
				m.budget.spend(i - s)
				return i + 1
			}
		case open:
			depth++
		}
	}
	m.budget.spend(len(m.src) - s)
	return -1
}

func (m *matcher) matchCapture(s int, digit byte) int {
	l := int(digit - '1')
	if l < 0 || l >= m.level || m.capture[l].len == capUnfinished {
		m.errorf("invalid capture index")
	}
	n := m.capture[l].len
	if n < 0 || len(m.src)-s < n {
		return -1
	}
	m.budget.spend(n)
	init := m.capture[l].init
	if m.src[init:init+n] == m.src[s:s+n] {
		return s + n
	}
	return -1
}

// captureValue returns capture i of the match from s to e: the whole match
// when the pattern has no captures and i is 0.
func (m *matcher) captureValue(i, s, e int) lua.LValue {
	if i >= m.level {
		if i != 0 {
			m.errorf("invalid capture index")
		}
		return lua.LString(m.src[s:e])
	}
	c := m.capture[i]
	switch c.len {
	case capUnfinished:
		m.errorf("unfinished capture")
	case capPosition:
		return lua.LNumber(c.init + 1)
	}
	return lua.LString(m.src[c.init : c.init+c.len])
}

// pushCaptures pushes the captures of the match from s to e (the whole
// match when there are none and wholeIfNone) and returns how many.
func (m *matcher) pushCaptures(s, e int, wholeIfNone bool) int {
	n := m.level
	if n == 0 && wholeIfNone {
		n = 1
	}
	for i := 0; i < n; i++ {
		m.L.Push(m.captureValue(i, s, e))
	}
	return n
}
