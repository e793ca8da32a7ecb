package luabox

import (
	"math"
	"math/big"
	"strconv"

	lua "github.com/yuin/gopher-lua"
)

// ExactInteger is a JSON integer that a float64 (Lua 5.1's only number)
// cannot hold exactly: beyond ±2^53, 12345678901234567890 would become
// 1.2345678901234567e+19 and 9007199254740993 would become …992. Such
// integers reach scripts as userdata that keep their text: json.encode
// writes the text back verbatim, tostring and .. give the text, == and < >
// compare them exactly with each other (and == a Lua number is false, as
// for any userdata), and arithmetic (+ - * / % ^ and unary -) converts to a
// float first, so an id passes through a handler unchanged unless the
// handler computes with it. type() says "userdata"; json.is_exact(v) tells
// them apart.
type ExactInteger struct{ Text string }

// AppendJSON writes the integer's text.
func (e ExactInteger) AppendJSON(_ *Converter, dst []byte, _ int) ([]byte, error) {
	return append(dst, e.Text...), nil
}

// float is the nearest float64.
func (e ExactInteger) float() float64 {
	f, _ := strconv.ParseFloat(e.Text, 64)
	return f
}

// exactLimit is the largest magnitude every integer below which a float64
// holds exactly.
const exactLimit = 1 << 53

// needsExact reports whether the integer literal num (optional '-', then
// digits) is beyond what a float64 holds exactly.
func needsExact(num []byte) bool {
	digits := num
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) < 16 {
		return false
	}
	if len(digits) > 16 {
		return true
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	return err != nil || n > exactLimit
}

// newExactMeta is the metatable of the exact integers of one Lua state.
func newExactMeta(L *lua.LState) *lua.LTable {
	meta := L.NewTable()
	meta.RawSetString("__metatable", lua.LString("json.exact")) // scripts cannot alter it
	meta.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(exactArg(L, 1).Text))
		return 1
	}))
	meta.RawSetString("__concat", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(concatText(L, L.Get(1)) + concatText(L, L.Get(2))))
		return 1
	}))
	meta.RawSetString("__eq", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(compareExact(L) == 0))
		return 1
	}))
	meta.RawSetString("__lt", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(compareExact(L) < 0))
		return 1
	}))
	meta.RawSetString("__le", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(compareExact(L) <= 0))
		return 1
	}))
	arith := func(op func(a, b float64) float64) *lua.LFunction {
		return L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LNumber(op(arithArg(L, 1), arithArg(L, 2))))
			return 1
		})
	}
	meta.RawSetString("__add", arith(func(a, b float64) float64 { return a + b }))
	meta.RawSetString("__sub", arith(func(a, b float64) float64 { return a - b }))
	meta.RawSetString("__mul", arith(func(a, b float64) float64 { return a * b }))
	meta.RawSetString("__div", arith(func(a, b float64) float64 { return a / b }))
	meta.RawSetString("__mod", arith(func(a, b float64) float64 { return a - math.Floor(a/b)*b }))
	meta.RawSetString("__pow", arith(math.Pow))
	meta.RawSetString("__unm", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(-arithArg(L, 1)))
		return 1
	}))
	return meta
}

func exactArg(L *lua.LState, n int) ExactInteger {
	if u, ok := L.Get(n).(*lua.LUserData); ok {
		if e, ok := u.Value.(ExactInteger); ok {
			return e
		}
	}
	L.ArgError(n, "exact integer expected")
	return ExactInteger{}
}

// asExact returns v's exact integer, if it is one.
func asExact(v lua.LValue) (ExactInteger, bool) {
	if u, ok := v.(*lua.LUserData); ok {
		e, ok := u.Value.(ExactInteger)
		return e, ok
	}
	return ExactInteger{}, false
}

func concatText(L *lua.LState, v lua.LValue) string {
	if e, ok := asExact(v); ok {
		return e.Text
	}
	switch v.(type) {
	case lua.LString, lua.LNumber:
		return v.String()
	}
	L.RaiseError("attempt to concatenate a %s value", v.Type().String())
	return ""
}

// compareExact compares arguments 1 and 2, both exact integers (Lua 5.1
// calls __eq, __lt and __le only for two values of the same kind).
func compareExact(L *lua.LState) int {
	a, b := exactArg(L, 1), exactArg(L, 2)
	x, _ := new(big.Int).SetString(a.Text, 10)
	y, _ := new(big.Int).SetString(b.Text, 10)
	return x.Cmp(y)
}

// arithArg is argument n as a float: an exact integer's nearest float, a
// number, or a string that converts as Lua converts strings in arithmetic.
func arithArg(L *lua.LState, n int) float64 {
	v := L.Get(n)
	if e, ok := asExact(v); ok {
		return e.float()
	}
	if f, ok := v.(lua.LNumber); ok {
		return float64(f)
	}
	if s, ok := v.(lua.LString); ok {
		if f, err := strconv.ParseFloat(string(s), 64); err == nil {
			return f
		}
	}
	L.RaiseError("attempt to perform arithmetic on a %s value", v.Type().String())
	return 0
}
