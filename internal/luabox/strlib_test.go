package luabox

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// eval runs code in a sealed sandbox and returns its results, printed as
// Lua's tostring would, joined by "|".
func eval(t *testing.T, code string) (string, error) {
	t.Helper()
	L := NewState()
	defer L.Close()
	Seal(L)
	fn, err := L.LoadString(code)
	if err != nil {
		t.Fatalf("compile %q: %v", code, err)
	}
	fn.Env = NewEnv(L)
	top := L.GetTop()
	L.Push(fn)
	if err := L.PCall(0, lua.MultRet, nil); err != nil {
		return "", err
	}
	var parts []string
	for i := top + 1; i <= L.GetTop(); i++ {
		parts = append(parts, L.Get(i).String())
	}
	return strings.Join(parts, "|"), nil
}

func TestPatternFunctionsFollowLua51(t *testing.T) {
	cases := []struct{ code, want string }{
		{`return string.byte("abc")`, "97"},
		{`return string.byte("abc", 2)`, "98"},
		{`return string.byte("abc", -1)`, "99"},
		{`return string.byte("abc", 1, -1)`, "97|98|99"},
		{`return string.byte("abc", -10, 2)`, "97|98"},
		{`return select("#", string.byte("abc", 0))`, "0"},
		{`return select("#", string.byte("abc", 10))`, "0"},
		{`return select("#", string.byte("", 1))`, "0"},
		{`return select("#", string.byte("abc", 3, 2))`, "0"},
		{`return select("#", string.byte(string.rep("a", 8000), 1, -1))`, "8000"},
		{`return ("A"):byte()`, "65"},
		{`return string.find("hello world", "o w")`, "5|7"},
		{`return string.find("hello", "l+")`, "3|4"},
		{`return string.find("hello", "(l)(l)")`, "3|4|l|l"},
		{`return string.find("a.b", ".", 1, true)`, "2|2"},
		{`return string.find("abc", "b", -1)`, "nil"},
		{`return string.find("abc", "", 10)`, "4|3"},
		{`return string.find("abc", "^b")`, "nil"},
		{`return string.find("  x", "()x()")`, "3|3|3|4"},
		{`return string.match("  trim me  ", "^%s*(.-)%s*$")`, "trim me"},
		{`return string.match("key=value", "(%w+)=(%w+)")`, "key|value"},
		{`return string.match("2026-11-30", "(%d+)-(%d+)-(%d+)")`, "2026|11|30"},
		{`return string.match("hello", "xyz")`, "nil"},
		{`return string.match("THE (quick) fox", "%((%a+)%)")`, "quick"},
		{`return string.match("f(a(b)c)d", "%b()")`, "(a(b)c)"},
		{`return string.match("THE quick", "%f[%a]%a+", 4)`, "quick"},
		{`return string.match("abcabc", "(a)(b)c%1%2")`, "a|b"},
		{`return string.match("[x]", "[]x[]+")`, "[x]"},
		{`return string.match("a-b", "[%w-]+")`, "a-b"},
		{`return string.match("x9", "[^%d]")`, "x"},
		{`return string.match("hello", ".-l")`, "hel"},
		{`return string.match("hello", "l?l?o")`, "llo"},
		{`return string.match("abc", "()b()")`, "2|3"},
		{`return ("x"):rep(3)`, "xxx"},
		{`return string.upper("abc XYZ 019 {|}~@[\96"), string.lower("ABC xyz @[\96{") == "abc xyz @[\96{"`, "ABC XYZ 019 {|}~@[`|true"},
		{`return string.upper(12), string.lower(1.5), ("").upper(""), string.upper("ALREADY")`, "12|1.5||ALREADY"},
		// Bytes, as in the C locale: only ASCII letters change, and what is
		// not UTF-8 comes back as it went in.
		{`return string.upper("\255\233t\195\169") == "\255\233T\195\169", string.lower("\195\137Z") == "\195\137z", string.upper("\0a\0") == "\0A\0"`, "true|true|true"},
		{`local s = string.rep("\255a\128z{\96@[\225\250", 5) return string.upper(s) == string.rep("\255A\128Z{\96@[\225\250", 5), string.lower(string.upper(s)) == s`, "true|true"},
		{`return string.gsub("hello world", "o", "0")`, "hell0 w0rld|2"},
		{`return string.gsub("hello world", "(%w+)", "<%1>")`, "<hello> <world>|2"},
		{`return string.gsub("hello", "", "-")`, "-h-e-l-l-o-|6"},
		{`return string.gsub("abc", "%w", "%0%0")`, "aabbcc|3"},
		{`return string.gsub("abc", "b", "%%")`, "a%c|1"},
		{`return string.gsub("hello world", "%w+", "x", 1)`, "x world|1"},
		{`return string.gsub("abc", "^a", "z")`, "zbc|1"},
		{`return string.gsub("aaa", "^a", "z")`, "zaa|1"},
		{`return string.gsub("$name is $age", "%$(%w+)", {name="Ann", age=7})`, "Ann is 7|2"},
		{`return string.gsub("a b", "%w", function(c) return c:upper() end)`, "A B|2"},
		{`return string.gsub("a b", "%w", function(c) return nil end)`, "a b|2"},
		{`return string.gsub("<a>", "<", "&lt;")`, "&lt;a>|1"},
		{`local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t+1] = k..v end return table.concat(t, ",")`, "a1,b2"},
		{`local n = 0 for w in ("one two  three"):gmatch("%a+") do n = n + 1 end return n`, "3"},
		{`local t = {} for w in ("abc"):gmatch("") do t[#t+1] = "." end return #t`, "4"},
		{`return string.format("%d|%5d|%-5d|%05d|%+d|%x|%X|%o|%#x", 42, 42, 42, 42, 42, 255, 255, 8, 255)`, "42|   42|42   |00042|+42|ff|FF|10|0xff"},
		{`return string.format("%.3f|%e|%g|%g|%g|%10.2f", 3.14159, 12345.678, 0.1, 1e20, 100000, 2.5)`, "3.142|1.234568e+04|0.1|1e+20|100000|      2.50"},
		{`return string.format("%s|%10s|%-4s|%.2s|%q", "hi", "right", "l", "truncate", 'a "q"\n')`, "hi|     right|l   |tr|\"a \\\"q\\\"\\\n\""},
		{`return string.format("%c%c", 72, 105)`, "Hi"},
		{`return string.format("%s %s %s", 1, true, nil)`, "1 true nil"},
		{`return string.format("%5.1s|", "abc")`, "    a|"},
		{`return string.format("100%%")`, "100%"},
		{`return string.format("%d", -7.9)`, "-7"},
		{`return string.format("%f", 1/0)`, "inf"},
		{`return table.concat({1, "a", 2}, "-")`, "1-a-2"},
		{`return table.concat({1, 2, 3}, ",", 2, 3)`, "2,3"},
		{`local t = {3, 1, 2} table.sort(t) return table.concat(t, ",")`, "1,2,3"},
		{`local t = {3, 1, 2} table.sort(t, function(a, b) return a > b end) return table.concat(t, ",")`, "3,2,1"},
		{`return unpack({1, 2, 3})`, "1|2|3"},
		{`return unpack({1, 2, 3}, 2)`, "2|3"},
		{`return loadstring("return 1 + 1")()`, "2"},
		{`local parts, i = {"return ", "40 + 2"}, 0 return load(function() i = i + 1 return parts[i] end)()`, "42"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			got, err := eval(t, tc.code)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLibraryErrors(t *testing.T) {
	cases := []struct{ code, want string }{
		{`return string.find("x", "%")`, "malformed pattern (ends with '%')"},
		{`return string.find("x", "[a")`, "missing ']'"},
		{`return string.match("x", "(x")`, "unfinished capture"},
		{`return string.match("x", "x)")`, "invalid pattern capture"},
		{`return string.match("x", "%1")`, "invalid capture index"},
		{`return string.match("x", "%b")`, "missing arguments to '%b'"},
		{`return string.match("x", "%fx")`, "missing '[' after '%f'"},
		{`return string.match("x", string.rep("(", 40) .. "x" .. string.rep(")", 40))`, "too many captures"},
		{`return string.match(string.rep("a", 300), string.rep("a?", 300) .. "b")`, "pattern too complex"},
		{`return string.gsub("x", "x", true)`, "string/function/table expected"},
		{`return string.gsub("x", "x", function() return {} end)`, "invalid replacement value (a table)"},
		{`return string.format("%p", {})`, "invalid option '%p'"},
		{`return string.format("%v", 1)`, "invalid option '%v'"},
		{`return string.format("%100d", 1)`, "width or precision too long"},
		{`return string.format("%d", "x")`, "number expected"},
		{`return string.rep("x", 1e9)`, "exceeds the limit"},
		{`return table.concat({1, {}, 3})`, "invalid value (a table) at index 2"},
		{`return unpack({}, 1, 1e7)`, "too many results"},
		{`return loadstring(string.rep("(", 300) .. "1" .. string.rep(")", 300))`, "nested deeper than 200"},
		{`return loadstring(string.rep(" ", 70000))`, "source larger than"},
		{`return loadstring("\27Lua")`, "binary chunks"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			got, err := eval(t, tc.code)
			msg := got
			if err != nil {
				msg = err.Error()
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("got %q (err %v), want it to mention %q", got, err, tc.want)
			}
		})
	}
}

func TestLibraryTablesAreReadOnly(t *testing.T) {
	cases := []string{
		`string.upper = function() return "pwned" end`,
		`getmetatable("").__index.upper = function() return "pwned" end`,
		`rawset(string, "upper", function() return "pwned" end)`,
		`table.insert(string, "x")`,
		`table.sort(math)`,
		`setmetatable(string, {})`,
		`math.pi = 3`,
		`getmetatable(_G).__index.string = {}`,
		`loadstring("string.upper = nil")()`,
	}
	for _, code := range cases {
		t.Run(code, func(t *testing.T) {
			L := NewState()
			defer L.Close()
			Seal(L)
			fn, err := L.LoadString(code)
			if err != nil {
				t.Fatal(err)
			}
			fn.Env = NewEnv(L)
			L.Push(fn)
			_ = L.PCall(0, 0, nil) // it may fail or not: what matters is what the next script sees
			next, _ := L.LoadString(`return ("abc"):upper(), string.upper("x"), math.pi > 3.14, type(table.insert)`)
			next.Env = NewEnv(L)
			L.Push(next)
			if err := L.PCall(0, 4, nil); err != nil {
				t.Fatalf("the next script failed: %v", err)
			}
			got := L.Get(-4).String() + L.Get(-3).String() + L.Get(-2).String() + L.Get(-1).String()
			if got != "ABCXtruefunction" {
				t.Fatalf("the next script saw %q", got)
			}
		})
	}
	t.Run("getmetatable hides the string metatable", func(t *testing.T) {
		if got, err := eval(t, `return getmetatable("")`); err != nil || got != "false" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("a file's own globals stay writable", func(t *testing.T) {
		if got, err := eval(t, `x = 1; _G.y = 2; return x + y`); err != nil || got != "3" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
}

// hostile are library calls that ran for seconds to minutes, or grew memory
// past any limit, in one Go call before the sandbox bounded them; err is
// what stops each (alternatives separated by "|", as timing decides which
// comes first), or "" where the bounded version finishes with want (or, on
// a slow machine, is stopped by the deadline).
var hostile = []struct{ name, code, err, want string }{
	{"gsub escaping a large payload", `return #(string.gsub(tags, "<", "&lt;"))`, "", "2621440"},
	{"trim of a large payload", `return #string.match(big, "^%s*(.-)%s*$")`, "", "1048576"},
	{"backtracking .-.-.-", `return string.find(big, ".-.-.-.-x")`, "interrupted", ""},
	{"find from every position", `return string.find(big, "a*b")`, "interrupted", ""},
	{"balance from every position", `return string.find(opens, "%b()")`, "too much work|interrupted", ""},
	{"gmatch over everything", `local n = 0 for _ in big:gmatch(".-") do n = n + 1 end return n`, "", "1048577"},
	{"back-reference", `return string.find(big, "(.*)%1x")`, "too much work|interrupted", ""},
	{"concat of one big string many times", `local t = {} for i = 1, 24 do t[i] = huge end return #table.concat(t)`, "result larger than the limit", ""},
	{"format of many big strings", `return #string.format(string.rep("%s", 24), huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge, huge)`, "result larger than the limit", ""},
	{"gsub growing past the limit", `return #string.gsub(huge, "x", "xx")`, "result larger than the limit|interrupted", ""},
	{"rep past the limit", `return #string.rep(huge, 24)`, "exceeds the limit", ""},
	{"unpack of ten million", `return select("#", unpack({}, 1, 1e7))`, "too many results", ""},
	{"date with a megabyte of format", `return #os.date(string.rep("%c", 5e5))`, "format longer than 1024 bytes", ""},
	{"date with an ordinary format", `return #os.date("!%Y-%m-%dT%H:%M:%S")`, "", "19"},
	{"byte of every byte of a megabyte", `return select("#", string.byte(big, 1, -1))`, "too many results", ""},
	{"byte of a megabyte, Lua 5.1's way", `return select("#", string.byte(big))`, "", "1"},
	{"deeply nested loadstring", `return select(2, loadstring(string.rep("(", 4e6) .. string.rep(")", 4e6)))`, "", "load: source larger than 65536 bytes"},
	{"sort with a slow comparator", `local t = {} for i = 1, 2e5 do t[i] = (i * 7919) % 200003 end table.sort(t, function(a, b) for i = 1, 50 do end return a < b end) return t[1]`, "deadline", ""},
	{"sort of a million numbers", `local t = {} for i = 1, 1e5 do t[i] = (i * 7919) % 100003 end table.sort(t) return t[1]`, "", "1"},
}

// TestHostileCallsEndByTheDeadline runs each hostile call with a 500 ms
// deadline, on 1 MiB subjects (16 MiB for the size limits): each ends, with
// the expected error or result, within the deadline plus 100 ms.
func TestHostileCallsEndByTheDeadline(t *testing.T) {
	const deadline = 500 * time.Millisecond
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			L := NewState()
			defer L.Close()
			L.SetGlobal("big", lua.LString(strings.Repeat("a", 1<<20)))
			L.SetGlobal("tags", lua.LString(strings.Repeat("<a", 1<<19)))
			L.SetGlobal("opens", lua.LString(strings.Repeat("(", 1<<20)))
			L.SetGlobal("huge", lua.LString(strings.Repeat("x", MaxString)))
			Seal(L)
			fn, err := L.LoadString(tc.code)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			L.SetContext(ctx)
			start := time.Now()
			L.Push(fn)
			err = L.PCall(0, 1, nil)
			if took := time.Since(start); took > deadline+100*time.Millisecond {
				t.Fatalf("took %v with a deadline of %v", took, deadline)
			}
			switch {
			case tc.err == "" && err != nil && !containsAny(err.Error(), "interrupted|deadline"):
				// A slow machine (or -race) may stop even the bounded
				// versions at the deadline: that is the bound holding.
				t.Fatalf("failed: %v", err)
			case tc.err == "" && err != nil:
			case tc.err == "" && L.Get(-1).String() != tc.want:
				t.Fatalf("got %.80q, want %q", L.Get(-1).String(), tc.want)
			case tc.err != "" && (err == nil || !containsAny(err.Error(), tc.err)):
				t.Fatalf("got %v, want an error mentioning %q", err, tc.err)
			}
		})
	}
}

// containsAny reports whether s contains one of the "|"-separated texts.
func containsAny(s, alternatives string) bool {
	for _, alt := range strings.Split(alternatives, "|") {
		if strings.Contains(s, alt) {
			return true
		}
	}
	return false
}

// TestCaseMaskMatchesByteByByte checks the eight-at-a-time case test against
// the byte test for every byte value in every lane.
func TestCaseMaskMatchesByteByByte(t *testing.T) {
	for _, r := range []struct{ from, to byte }{{'a', 'z'}, {'A', 'Z'}} {
		for lane := 0; lane < 8; lane++ {
			for c := 0; c < 256; c++ {
				var b [8]byte
				for i := range b {
					b[i] = byte(c + 37*i) // other lanes vary too
				}
				b[lane] = byte(c)
				w := binary.LittleEndian.Uint64(b[:])
				got := caseMask(w, r.from, r.to)
				for i, x := range b {
					want := x >= r.from && x <= r.to
					if (got>>(8*i+7)&1 == 1) != want || got>>(8*i)&0x7f != 0 {
						t.Fatalf("caseMask(%x, %q..%q): lane %d (byte %#x) is %v, want %v", w, r.from, r.to, i, x, !want, want)
					}
				}
			}
		}
	}
}

// TestConcatIsBoundedAndKeepsLuaSemantics: `..` compiles to a bounded Go
// call (BoundConcat) that must do what the VM's concatenation does.
func TestConcatIsBoundedAndKeepsLuaSemantics(t *testing.T) {
	L := NewState()
	defer L.Close()
	run := func(src string, bounded bool) (lua.LValue, error) {
		chunk, err := parse.Parse(strings.NewReader(src), "test.lua")
		if err != nil {
			return nil, err
		}
		if bounded {
			BoundConcat(chunk)
		}
		proto, err := lua.Compile(chunk, "test.lua")
		if err != nil {
			return nil, err
		}
		fn := L.NewFunctionFromProto(proto)
		fn.Env = NewEnv(L)
		if err := L.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}); err != nil {
			return nil, err
		}
		v := L.Get(-1)
		L.Pop(1)
		return v, nil
	}
	// Each case as the VM's own concatenation answers it, and as expected.
	for _, tc := range []struct{ src, want string }{
		{`return "a" .. "b"`, "ab"},
		{`return "a" .. 1 .. 2.5 .. "z"`, "a12.5z"},
		{`local n = 10 return n .. ""`, "10"},
		{`local t = setmetatable({}, {__concat = function(a, b) return "T" end}) return "x" .. t`, "T"},
		{`local t = setmetatable({}, {__concat = function(a, b) return (type(a) == "table" and "L" or a) .. "+" .. (type(b) == "table" and "R" or b) end})
		  return "a" .. "b" .. t .. "c" .. "d"`, "abL+cd"}, // right to left: t .. "cd" goes through the metamethod
		{`return ("a" .. ("b" .. "c")) .. "d"`, "abcd"},
		{`local parts = {} for i = 1, 3 do parts[#parts + 1] = "p" .. i end return table.concat(parts, ",") .. "!"`, "p1,p2,p3!"},
		{`return "n=" .. #("abc" .. "de")`, "n=5"},
		{`local function f() return "x", "y" end return ({"a" .. f()})[1] .. ""`, "ax"},
		{`local n = 0 local function g() n = n + 1 return n end return g() .. g() .. g()`, "123"}, // operands in order
		{`local function v(...) return "<" .. ... end return v("p", "q")`, "<p"},                  // ... is one value too
	} {
		vm, vmErr := run(tc.src, false)
		got, err := run(tc.src, true)
		if err != nil || vmErr != nil || got.String() != tc.want || vm.String() != tc.want {
			t.Errorf("%s: got %v, %v; the VM %v, %v; want %q", tc.src, got, err, vm, vmErr, tc.want)
		}
	}
	_, vmErr := run("local x return 'a' .. x", false)
	if _, err := run("local x return 'a' .. x", true); err == nil || vmErr == nil || !strings.Contains(err.Error(), "test.lua:1: cannot perform concat operation between string and nil") {
		t.Errorf("nil operand: %v (the VM: %v)", err, vmErr)
	}
	start := time.Now()
	_, err := run(`local s = "x" while true do s = s .. s end`, true)
	if err == nil || !strings.Contains(err.Error(), "..: result larger than the limit of 16777216 bytes") {
		t.Fatalf("doubling: %v", err)
	}
	t.Logf("the doubling was refused at 16 MiB after %v", time.Since(start))
}

// TestSealedTablesAreSequences: a sealed array (a list in the scripts'
// config) answers #, ipairs and pairs as the array it is, and nothing they
// return lets a script write to it.
func TestSealedTablesAreSequences(t *testing.T) {
	L := NewState()
	defer L.Close()
	cfg := L.NewTable()
	list := L.NewTable()
	for _, s := range []string{"a", "b", "c"} {
		list.Append(lua.LString(s))
	}
	inner := L.NewTable()
	inner.RawSetString("k", lua.LString("v"))
	list.Append(inner)
	cfg.RawSetString("list", list)
	cfg.RawSetString("name", lua.LString("x"))
	L.SetGlobal("config", cfg)
	Seal(L)
	for _, tc := range []struct{ code, want string }{
		{`return #config.list`, "4"},
		{`local s = "" for i, v in ipairs(config.list) do s = s .. i .. (type(v) == "string" and v or v.k) end return s`, "1a2b3c4v"},
		{`local n = 0 for k, v in pairs(config) do n = n + 1 end return n`, "2"},
		{`local t = {} for k in pairs(config.list) do t[#t + 1] = k end return #t`, "4"},
		{`local f, s = pairs(config.list) return tostring(s == config.list)`, "true"},
		{`local f, s, i = ipairs(config.list) local ok = pcall(function() s[1] = "z" end) return tostring(ok) .. config.list[1]`, "falsea"},
		{`local ok = pcall(function() for k, v in ipairs(config.list) do if type(v) == "table" then v.k = "w" end end end) return tostring(ok) .. config.list[4].k`, "falsev"},
		{`local t = {1, 2, 3} local n = 0 for _ in ipairs(t) do n = n + 1 end for _ in pairs(t) do n = n + 1 end return n .. #t`, "63"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			fn, err := L.LoadString(tc.code)
			if err != nil {
				t.Fatal(err)
			}
			fn.Env = NewEnv(L)
			L.Push(fn)
			if err := L.PCall(0, 1, nil); err != nil {
				t.Fatal(err)
			}
			if got := L.Get(-1).String(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			L.Pop(1)
		})
	}
}
