// Package scripts holds the Lua files that ship with samgw (the Go engine that
// runs them is package scripting), embedded so the binary
// runs with no files around it:
//
//   - default.lua: the echo handler, served when no --scripts is given;
//   - examples/: a scripts directory of example handlers;
//   - scenarios/: client scenarios, among them demo.lua;
//   - types/: LuaLS/EmmyLua type stubs of the handler API and of the
//     `samgw test` harness.
package scripts

import (
	"embed"
	"io/fs"
)

//go:embed *.lua examples scenarios types
var files embed.FS

// FS returns every shipped file, rooted at this directory.
func FS() fs.FS { return files }

// Handlers returns the default scripts directory: default.lua.
func Handlers() fs.FS { return files }

// Examples returns the examples directory as a scripts directory.
func Examples() fs.FS {
	sub, err := fs.Sub(files, "examples")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Demo returns the demo scenario, run by `samgw client` without --scenario.
func Demo() []byte { return mustRead("scenarios/demo.lua") }

// Types returns the LuaLS/EmmyLua type stubs of the handler API, printed
// by `samgw lua-types`.
func Types() []byte { return mustRead("types/samgw.d.lua") }

// TestTypes returns the type stubs of the `samgw test` harness.
func TestTypes() []byte { return mustRead("types/samgw_test.d.lua") }

func mustRead(name string) []byte {
	src, err := files.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return src
}
