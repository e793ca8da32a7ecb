package main

import (
	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/scripts"
)

func luaTypesCommand() *cli.Command {
	return &cli.Command{
		Name:  "lua-types",
		Usage: "print the LuaLS/EmmyLua type stubs of the handler API (samgw lua-types > samgw.d.lua)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "test", Usage: "print the stubs of the samgw test harness instead (samgw lua-types --test > samgw_test.d.lua)"},
		},
		Action: func(cctx *cli.Context) error {
			stubs := scripts.Types()
			if cctx.Bool("test") {
				stubs = scripts.TestTypes()
			}
			_, err := cctx.App.Writer.Write(stubs)
			return err
		},
	}
}
