package main

import (
	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/lua"
)

func luaTypesCommand() *cli.Command {
	return &cli.Command{
		Name:  "lua-types",
		Usage: "print the LuaLS/EmmyLua type stubs of the handler API (samgw lua-types > samgw.d.lua)",
		Action: func(cctx *cli.Context) error {
			_, err := cctx.App.Writer.Write(lua.Types())
			return err
		},
	}
}
