package luabox

import (
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// Bounds of code compiled at run time by load and loadstring. gopher-lua
// parses and compiles in one Go call the deadline cannot interrupt, and
// recursively in the nesting of the source: 4 million nested parentheses
// took 6 s and 2 GB.
const (
	// MaxLoadSource is the largest source load and loadstring compile.
	MaxLoadSource = 64 << 10
	// MaxLoadNesting is how deeply brackets and blocks may nest in it.
	MaxLoadNesting = 200
)

// baseLoadString is loadstring(s[, chunkname]).
func baseLoadString(L *lua.LState) int {
	return loadSource(L, L.CheckString(1), L.OptString(2, "<string>"))
}

// baseLoad is load(fn[, chunkname]): fn returns the source piece by piece.
func baseLoad(L *lua.LState) int {
	fn := L.CheckFunction(1)
	name := L.OptString(2, "=(load)")
	var src strings.Builder
	for {
		L.Push(fn)
		L.Call(0, 1)
		piece := L.Get(-1)
		L.Pop(1)
		if piece == lua.LNil {
			break
		}
		s, ok := piece.(lua.LString)
		if !ok {
			L.Push(lua.LNil)
			L.Push(lua.LString("reader function must return a string"))
			return 2
		}
		if s == "" {
			break
		}
		if src.Len()+len(s) > MaxLoadSource {
			return loadFailed(L, "source larger than %d bytes", MaxLoadSource)
		}
		src.WriteString(string(s))
	}
	return loadSource(L, src.String(), name)
}

// loadSource compiles src in an environment of its own (see NewEnv), or
// returns nil and the reason, as load does.
func loadSource(L *lua.LState, src, name string) int {
	if len(src) > MaxLoadSource {
		return loadFailed(L, "source larger than %d bytes", MaxLoadSource)
	}
	if strings.HasPrefix(src, "\x1bLua") {
		return loadFailed(L, "binary chunks are not loaded")
	}
	if depth := nesting(src); depth > MaxLoadNesting {
		return loadFailed(L, "source nested deeper than %d levels", MaxLoadNesting)
	}
	chunk, err := parse.Parse(strings.NewReader(src), name)
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	BoundConcat(chunk)
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	fn := L.NewFunctionFromProto(proto)
	fn.Env = NewEnv(L)
	L.Push(fn)
	return 1
}

func loadFailed(L *lua.LState, format string, args ...any) int {
	L.Push(lua.LNil)
	L.Push(lua.LString("load: " + fmt.Sprintf(format, args...)))
	return 2
}

// nesting returns the deepest nesting of brackets and blocks in src,
// skipping strings and comments. It need not parse Lua exactly: it only
// has to see every level the parser will.
func nesting(src string) int {
	depth, deepest := 0, 0
	open := func() {
		depth++
		deepest = max(deepest, depth)
	}
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '-' && strings.HasPrefix(src[i:], "--"):
			i += 2
			if n := longBracket(src[i:]); n >= 0 {
				i = skipLong(src, i, n)
			} else {
				for i < len(src) && src[i] != '\n' {
					i++
				}
			}
		case c == '"' || c == '\'':
			for i++; i < len(src) && src[i] != c; i++ {
				if src[i] == '\\' {
					i++
				}
			}
		case c == '[' && longBracket(src[i:]) >= 0:
			i = skipLong(src, i, longBracket(src[i:]))
		case c == '(' || c == '{' || c == '[':
			open()
		case c == ')' || c == '}' || c == ']':
			depth--
		case c == '_' || isAlpha(c):
			j := i
			for j < len(src) && (src[j] == '_' || isAlpha(src[j]) || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			switch src[i:j] {
			case "function", "if", "do", "repeat":
				open()
			case "end", "until":
				depth--
			}
			i = j - 1
		}
	}
	return deepest
}

// longBracket returns the level of a long bracket ([[, [=[, …) at the start
// of s, or -1.
func longBracket(s string) int {
	if !strings.HasPrefix(s, "[") {
		return -1
	}
	n := 1
	for n < len(s) && s[n] == '=' {
		n++
	}
	if n < len(s) && s[n] == '[' {
		return n - 1
	}
	return -1
}

// skipLong returns the index of the last byte of the long string or
// comment of the given level that starts at i.
func skipLong(src string, i, level int) int {
	closing := "]" + strings.Repeat("=", level) + "]"
	if end := strings.Index(src[i+level+2:], closing); end >= 0 {
		return i + level + 2 + end + len(closing) - 1
	}
	return len(src)
}
