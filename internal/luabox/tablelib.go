package luabox

import (
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// MaxUnpack is how many values unpack may push: C Lua's stack limit
// (LUAI_MAXCSTACK). gopher-lua pushes any count, one value at a time,
// without looking at the deadline.
const MaxUnpack = 8000

// tabConcat is table.concat with the result's size summed before anything
// is built.
func tabConcat(L *lua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, t.Len())
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	b := newBudget(L, "table.concat", int(^uint(0)>>1))
	size := 0
	for k := i; k <= j; k++ {
		v := t.RawGetInt(k)
		switch v.(type) {
		case lua.LString, lua.LNumber:
		default:
			L.RaiseError("table.concat: invalid value (a %s) at index %d", v.Type(), k)
		}
		size += len(v.String())
		if k < j {
			size += len(sep)
		}
		checkSize(L, "table.concat", size)
		b.spend(1)
	}
	var out strings.Builder
	out.Grow(size)
	for k := i; k <= j; k++ {
		out.WriteString(t.RawGetInt(k).String())
		if k < j {
			out.WriteString(sep)
		}
	}
	L.Push(lua.LString(out.String()))
	return 1
}

// tabSort is table.sort that looks at the deadline between comparisons.
func tabSort(L *lua.LState) int {
	t := L.CheckTable(1)
	checkWritable(L, t, "table.sort")
	var cmp *lua.LFunction
	if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
		cmp = L.CheckFunction(2)
	}
	n := t.Len()
	values := make([]lua.LValue, n)
	for k := range values {
		values[k] = t.RawGetInt(k + 1)
	}
	b := newBudget(L, "table.sort", int(^uint(0)>>1))
	sort.Slice(values, func(x, y int) bool {
		b.spend(1)
		if cmp == nil {
			return L.LessThan(values[x], values[y])
		}
		L.Push(cmp)
		L.Push(values[x])
		L.Push(values[y])
		L.Call(2, 1)
		less := lua.LVAsBool(L.Get(-1))
		L.Pop(1)
		return less
	})
	for k, v := range values {
		t.RawSetInt(k+1, v)
	}
	return 0
}

// baseUnpack is unpack, bounded to MaxUnpack values.
func baseUnpack(L *lua.LState) int {
	t := L.CheckTable(1)
	i := L.OptInt(2, 1)
	j := L.OptInt(3, t.Len())
	if i > j {
		return 0
	}
	n := j - i + 1
	if n <= 0 || n > MaxUnpack {
		L.RaiseError("unpack: too many results (more than %d)", MaxUnpack)
	}
	for k := i; k <= j; k++ {
		L.Push(t.RawGetInt(k))
	}
	return n
}

// guarded wraps a library function that writes into its first argument so
// that it refuses the read-only library tables.
func guarded(name string, fn lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if t, ok := L.Get(1).(*lua.LTable); ok {
			checkWritable(L, t, name)
		}
		return fn(L)
	}
}
