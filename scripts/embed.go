// Package scripts holds the Lua that ships with samgw, embedded so the binary
// runs with no files around it:
//
//   - default.lua: the echo handler, served when no --scripts is given;
//   - examples/: a scripts directory of example handlers;
package scripts

import (
	"embed"
	"io/fs"
)

//go:embed *.lua examples
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
