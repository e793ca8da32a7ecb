package scripting

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/scripts"
)

// standard is what Lua itself provides (sandboxed): not part of the stubs.
var standard = map[string]bool{
	"_G": true, "_VERSION": true, "assert": true, "error": true, "getmetatable": true, "ipairs": true,
	"load": true, "loadstring": true, "next": true, "pairs": true, "pcall": true, "rawequal": true,
	"rawget": true, "rawlen": true, "rawset": true, "select": true, "setmetatable": true, "tonumber": true,
	"tostring": true, "type": true, "unpack": true, "xpcall": true, "string": true, "table": true,
	"math": true, "os": true, "coroutine": true, "print": true, "require": true,
	"__samgw_concat": true, // what `..` compiles to (luabox.BoundConcat), not an API
}

// TestTypeStubsMatchTheAPI keeps scripts/types/samgw.d.lua in step with what a
// handler's Lua state really has: every module function is declared, and
// nothing declared is missing. Likewise scripts/types/samgw_test.d.lua with
// what a test's state has besides.
func TestTypeStubsMatchTheAPI(t *testing.T) {
	e, err := New(Config{FS: scripts.Handlers()})
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
	api := globalsOf(st)
	compareStubs(t, "scripts/types/samgw.d.lua", api, declaredIn(scripts.Types()))

	h := newHarness()
	tst, err := h.state(gen)
	if err != nil {
		t.Fatal(err)
	}
	defer tst.close()
	var harnessOnly []string
	for _, name := range globalsOf(tst) {
		if !slices.Contains(api, name) {
			harnessOnly = append(harnessOnly, name)
		}
	}
	compareStubs(t, "scripts/types/samgw_test.d.lua", harnessOnly, declaredIn(scripts.TestTypes()))
}

// globalsOf lists the global functions and tables of st, and the fields of
// the tables (as module.field), sorted; Lua's own are left out.
func globalsOf(st *luaState) []string {
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
	sort.Strings(have)
	return have
}

// declaredIn lists what a stubs file declares, the handler's own on_*
// functions left out.
func declaredIn(stubs []byte) []string {
	declared := regexp.MustCompile(`(?m)^function ([\w.]+)\(|^([\w.]+) = `)
	var names []string
	for _, m := range declared.FindAllStringSubmatch(string(stubs), -1) {
		if name := m[1] + m[2]; !strings.HasPrefix(name, "on_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func compareStubs(t *testing.T, file string, have, stub []string) {
	t.Helper()
	for _, n := range have {
		if !slices.Contains(stub, n) {
			t.Errorf("%s is in the API but not in %s", n, file)
		}
	}
	for _, n := range stub {
		if !slices.Contains(have, n) {
			t.Errorf("%s declares %s, which the API does not have", file, n)
		}
	}
}

// TestLuaAPIReferenceNamesEveryFunction keeps docs/lua-api.md complete: each
// function or value the stubs declare (print, the module tables and the
// Lua standard library aside) is named in one of its entry headings.
func TestLuaAPIReferenceNamesEveryFunction(t *testing.T) {
	doc, err := os.ReadFile("../docs/lua-api.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := regexp.MustCompile(`(?m)^###? (.+)$`).FindAllStringSubmatch(string(doc), -1)
	var named []string
	for _, h := range headings {
		for _, name := range strings.Split(h[1], ", ") {
			named = append(named, strings.TrimSpace(name))
		}
	}
	for _, name := range declaredIn(scripts.Types()) {
		if !strings.Contains(name, ".") && name != "uuid" && name != "now" && name != "config" {
			continue // a module table, print, or a global the guide covers
		}
		if strings.HasPrefix(name, "json.null") {
			continue
		}
		if !slices.Contains(named, name) && !slices.ContainsFunc(named, func(h string) bool { return strings.HasPrefix(h, name+",") }) {
			t.Errorf("docs/lua-api.md has no entry for %s", name)
		}
	}
}
