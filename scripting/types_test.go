package scripting

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	samgwlua "github.com/secureagentmessaging/samgw/lua"
)

// standard is what Lua itself provides (sandboxed): not part of the stubs.
var standard = map[string]bool{
	"_G": true, "_VERSION": true, "assert": true, "error": true, "getmetatable": true, "ipairs": true,
	"load": true, "loadstring": true, "next": true, "pairs": true, "pcall": true, "rawequal": true,
	"rawget": true, "rawlen": true, "rawset": true, "select": true, "setmetatable": true, "tonumber": true,
	"tostring": true, "type": true, "unpack": true, "xpcall": true, "string": true, "table": true,
	"math": true, "os": true, "coroutine": true, "print": true, "require": true,
}

// TestTypeStubsMatchTheAPI keeps lua/types/samgw.d.lua in step with what a
// handler's Lua state really has: every module function is declared, and
// nothing declared is missing.
func TestTypeStubsMatchTheAPI(t *testing.T) {
	e, err := New(Config{FS: samgwlua.Handlers()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	gen := e.current.Load()
	st, err := gen.get(0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.put(0, st)
	var have []string
	st.L.G.Global.ForEach(func(k, v lua.LValue) {
		name := k.String()
		if standard[name] {
			return
		}
		switch v := v.(type) {
		case *lua.LFunction:
			have = append(have, name)
		case *lua.LTable:
			have = append(have, name)
			real := v
			if mt, ok := v.Metatable.(*lua.LTable); ok { // a sealed module: read through its proxy
				if idx, ok := mt.RawGetString("__index").(*lua.LTable); ok {
					real = idx
				}
			}
			real.ForEach(func(k, _ lua.LValue) { have = append(have, name+"."+k.String()) })
		}
	})
	declared := regexp.MustCompile(`(?m)^function ([\w.]+)\(|^([\w.]+) = `)
	var stub []string
	for _, m := range declared.FindAllStringSubmatch(string(samgwlua.Types()), -1) {
		name := m[1] + m[2]
		if strings.HasPrefix(name, "on_") {
			continue // the handler's own functions, not the API
		}
		stub = append(stub, name)
	}
	sort.Strings(have)
	sort.Strings(stub)
	for _, n := range have {
		if !slices.Contains(stub, n) {
			t.Errorf("%s is in the API but not in lua/types/samgw.d.lua", n)
		}
	}
	for _, n := range stub {
		if !slices.Contains(have, n) {
			t.Errorf("lua/types/samgw.d.lua declares %s, which the API does not have", n)
		}
	}
}
