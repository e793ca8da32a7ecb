package luabox

import lua "github.com/yuin/gopher-lua"

// readOnlyField marks the metatable of a read-only proxy. Scripts cannot
// see that metatable (its __metatable field hides it), so they cannot
// unmark a proxy; marking a table of their own only protects it.
const readOnlyField = "__samgw_readonly"

// Seal makes every table reachable from L's globals read-only to scripts,
// and the string metatable unreachable. A Lua state serves many routes and
// many connections in turn: without this, `string.upper = evil` or
// `getmetatable("").__index.upper = evil` in one route would change what
// every later call on that state runs.
//
// Each table is replaced in its parent by an empty proxy whose metatable
// reads through to it and refuses writes; the metatable is protected
// (getmetatable returns false, setmetatable fails), and rawset,
// table.insert, table.remove and table.sort refuse proxies. `#`, pairs and
// ipairs see through a proxy (so a sealed array, a list in the scripts'
// config say, is a sequence), without handing out the table behind it.
// Call Seal after every module scripts see has been registered.
func Seal(L *lua.LState) {
	g := L.G.Global
	seen := map[*lua.LTable]*lua.LTable{g: g}
	str, _ := g.RawGetString(lua.StringLibName).(*lua.LTable)
	sealFields(L, g, seen)
	if str != nil {
		meta := L.NewTable()
		meta.RawSetString("__index", str)
		meta.RawSetString("__metatable", lua.LFalse)
		L.SetMetatable(lua.LString(""), meta)
	}
}

// sealFields replaces every table held by t with its read-only proxy.
func sealFields(L *lua.LState, t *lua.LTable, seen map[*lua.LTable]*lua.LTable) {
	var keys []lua.LValue
	t.ForEach(func(k, v lua.LValue) {
		if _, ok := v.(*lua.LTable); ok {
			keys = append(keys, k)
		}
	})
	for _, k := range keys {
		t.RawSet(k, readOnly(L, t.RawGet(k).(*lua.LTable), seen))
	}
}

// readOnly returns the proxy of t, sealing what t holds first.
func readOnly(L *lua.LState, t *lua.LTable, seen map[*lua.LTable]*lua.LTable) *lua.LTable {
	if p, ok := seen[t]; ok {
		return p
	}
	proxy := L.NewTable()
	seen[t] = proxy
	sealFields(L, t, seen)
	meta := L.NewTable()
	meta.RawSetString("__index", t)
	meta.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("attempt to modify a read-only table (field %s)", L.Get(2).String())
		return 0
	}))
	meta.RawSetString("__len", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(t.Len()))
		return 1
	}))
	meta.RawSetString("__metatable", lua.LFalse)
	meta.RawSetString(readOnlyField, lua.LTrue)
	proxy.Metatable = meta
	return proxy
}

// behind returns the table a read-only proxy reads through to, or t itself.
// Never hand it to a script: it is writable.
func behind(t *lua.LTable) *lua.LTable {
	if IsReadOnly(t) {
		if inner, ok := t.Metatable.(*lua.LTable).RawGetString("__index").(*lua.LTable); ok {
			return inner
		}
	}
	return t
}

// basePairs is pairs, seeing through read-only proxies: the iterator reads
// the table behind the proxy, and the state it returns is the proxy.
func basePairs(L *lua.LState) int {
	t := L.CheckTable(1)
	L.Push(L.Get(lua.UpvalueIndex(1))) // pairsNext, made once per state
	L.Push(t)
	L.Push(lua.LNil)
	return 3
}

func pairsNext(L *lua.LState) int {
	k, v := behind(L.CheckTable(1)).Next(L.Get(2))
	if k == lua.LNil {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(k)
	L.Push(v)
	return 2
}

// baseIpairs is ipairs, seeing through read-only proxies.
func baseIpairs(L *lua.LState) int {
	t := L.CheckTable(1)
	L.Push(L.Get(lua.UpvalueIndex(1))) // ipairsNext, made once per state
	L.Push(t)
	L.Push(lua.LNumber(0))
	return 3
}

func ipairsNext(L *lua.LState) int {
	i := L.CheckInt(2) + 1
	v := behind(L.CheckTable(1)).RawGetInt(i)
	if v == lua.LNil {
		return 0
	}
	L.Push(lua.LNumber(i))
	L.Push(v)
	return 2
}

// IsReadOnly reports whether t is a sealed library table.
func IsReadOnly(t *lua.LTable) bool {
	meta, ok := t.Metatable.(*lua.LTable)
	return ok && meta.RawGetString(readOnlyField) == lua.LTrue
}

// checkWritable raises an error when t is read-only.
func checkWritable(L *lua.LState, t *lua.LTable, what string) {
	if IsReadOnly(t) {
		L.RaiseError("%s: attempt to modify a read-only table", what)
	}
}

// NewEnv returns a table for one file's (or loaded chunk's) globals: it
// starts with the shared, sealed globals, takes the file's own
// assignments, and is its own _G. The shared globals are copied in rather
// than read through a metatable: they never change once sealed, and a
// global such as `string` or `json` is then one lookup instead of three,
// on every use in every call.
func NewEnv(L *lua.LState) *lua.LTable {
	g := L.G.Global
	env := L.CreateTable(0, 64)
	g.ForEach(func(k, v lua.LValue) { env.RawSet(k, v) })
	env.RawSetString("_G", env)
	return env
}

// baseSetMetatable is Lua 5.1's setmetatable: tables only. gopher-lua's
// also set the one metatable shared by every number (or boolean, or
// function) of the state, so setmetatable(0, {__tostring = f}) in one
// route changed tostring(42) for every route and connection the state
// served next. A protected metatable (with __metatable) stays.
func baseSetMetatable(L *lua.LState) int {
	t := L.CheckTable(1)
	mt := L.Get(2)
	if mt != lua.LNil {
		if _, ok := mt.(*lua.LTable); !ok {
			L.ArgError(2, "nil or table expected")
		}
	}
	if old, ok := t.Metatable.(*lua.LTable); ok && old.RawGetString("__metatable") != lua.LNil {
		L.RaiseError("cannot change a protected metatable")
	}
	t.Metatable = mt
	L.SetTop(1)
	return 1
}

// baseRawSet is rawset, refusing read-only tables.
func baseRawSet(L *lua.LState) int {
	t := L.CheckTable(1)
	checkWritable(L, t, "rawset")
	L.RawSet(t, L.CheckAny(2), L.CheckAny(3))
	L.SetTop(1)
	return 1
}
