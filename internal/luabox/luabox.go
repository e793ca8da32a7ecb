// Package luabox is the Lua sandbox both sides of samgw run scripts in:
// the server's handlers and the client's scenarios. It opens the safe part
// of gopher-lua's standard library and replaces every library function
// that could run long or allocate big in one Go call, where the deadline
// checked between Lua instructions cannot reach:
//
//   - pattern matching (find, match, gmatch, gsub) with a recursion limit
//     (MaxPatternDepth), a step budget (MaxPatternSteps) and deadline checks,
//     gsub building its result linearly;
//   - rep, format, gsub, table.concat refusing results over MaxString;
//   - unpack bounded to MaxUnpack values; table.sort checking the deadline;
//   - load and loadstring bounded in size (MaxLoadSource) and nesting
//     (MaxLoadNesting), compiling into an environment of their own.
//
// Seal then makes the shared library tables read-only (see Seal), and
// NewEnv gives each file its own globals.
package luabox

import lua "github.com/yuin/gopher-lua"

// Sizes of a Lua state: small to start, bounded so that runaway recursion
// or stack growth fails with an error.
const (
	CallStackSize   = 200
	RegistrySize    = 1024
	RegistryMaxSize = 256 * 1024
)

// MaxString is the largest string one library call builds.
const MaxString = 16 << 20

// NewState returns a Lua state with the sandboxed libraries open. The
// caller registers its own modules, then calls Seal.
func NewState() *lua.LState {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       CallStackSize,
		RegistrySize:        RegistrySize,
		RegistryMaxSize:     RegistryMaxSize,
		MinimizeStackMemory: true,
	})
	Open(L)
	return L
}

// removedGlobals are the base functions scripts do not get: file access,
// GC control, environment games, and gopher-lua's debugging helpers.
var removedGlobals = []string{"dofile", "loadfile", "collectgarbage", "getfenv", "setfenv", "module",
	"require", "newproxy", "_printregs", "_GOPHER_LUA_VERSION"}

// Open opens the sandboxed libraries on L: base without file access, code
// loading from files, GC control or environment games; string, table and
// math; os.time, os.clock, os.date and os.difftime. Library functions that
// could escape the call's deadline or size limits are replaced (see the
// package documentation).
func Open(L *lua.LState) {
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.OsLibName, lua.OpenOs},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	g := L.G.Global
	for _, name := range removedGlobals {
		g.RawSetString(name, lua.LNil)
	}
	setFuncs(L, g, map[string]lua.LGFunction{
		"load":         baseLoad,
		"loadstring":   baseLoadString,
		"unpack":       baseUnpack,
		"rawset":       baseRawSet,
		"setmetatable": baseSetMetatable,
		concatGlobal:   concat,
	})

	g.RawSetString("pairs", L.NewClosure(basePairs, L.NewFunction(pairsNext)))
	g.RawSetString("ipairs", L.NewClosure(baseIpairs, L.NewFunction(ipairsNext)))

	osFull := g.RawGetString(lua.OsLibName).(*lua.LTable)
	os := L.NewTable()
	for _, name := range []string{"time", "clock", "date", "difftime"} {
		os.RawSetString(name, osFull.RawGetString(name))
	}
	os.RawSetString("date", L.NewFunction(boundedDate(osFull.RawGetString("date").(*lua.LFunction).GFunction)))
	g.RawSetString(lua.OsLibName, os)

	str := g.RawGetString(lua.StringLibName).(*lua.LTable)
	str.RawSetString("dump", lua.LNil)
	str.RawSetString("gfind", lua.LNil)
	setFuncs(L, str, map[string]lua.LGFunction{
		"find":   strFind,
		"match":  strMatch,
		"gmatch": strGmatch,
		"gsub":   strGsub,
		"rep":    strRep,
		"byte":   strByte,
		"format": strFormat,
		"upper":  strUpper,
		"lower":  strLower,
	})

	tab := g.RawGetString(lua.TabLibName).(*lua.LTable)
	insert := tab.RawGetString("insert").(*lua.LFunction).GFunction
	remove := tab.RawGetString("remove").(*lua.LFunction).GFunction
	setFuncs(L, tab, map[string]lua.LGFunction{
		"concat": tabConcat,
		"sort":   tabSort,
		"insert": guarded("table.insert", insert),
		"remove": guarded("table.remove", remove),
	})
}

// maxDateFormat bounds os.date's format. gopher-lua expands it in one Go
// call, 19 bytes of output for every "%c", so a format of 16 MB built a
// 152 MB string over two seconds, past the deadline and the size limit.
const maxDateFormat = 1024

// boundedDate is os.date refusing a format longer than maxDateFormat.
func boundedDate(date lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if f, ok := L.Get(1).(lua.LString); ok && len(f) > maxDateFormat {
			L.RaiseError("os.date: format longer than %d bytes", maxDateFormat)
		}
		return date(L)
	}
}

func setFuncs(L *lua.LState, t *lua.LTable, funcs map[string]lua.LGFunction) {
	for name, fn := range funcs {
		t.RawSetString(name, L.NewFunction(fn))
	}
}
