package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/scripting"
)

// errLuaTestsFailed makes `samgw test` exit non-zero after the report.
var errLuaTestsFailed = errors.New("tests failed")

func luaTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "test",
		Usage:     "run the *_test.lua files of a scripts directory against its handlers, offline",
		ArgsUsage: "[DIR]",
		Description: "Each test(name, fn) runs in a fresh Lua state with every handler loaded as serve loads it, made-up\n" +
			"connections (new_conn, call, connect, disconnect), an in-memory store, a clock the test moves\n" +
			"(clock.advance), stubbed http/upstream/nats answers (stub.*) and assert_eq / assert_error.\n" +
			"Prints each failure with file:line and \"N passed, M failed\"; exits 1 when one failed. DIR defaults to \".\".",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "run", Usage: "run only the tests whose \"file: name\" matches this regular expression"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print every test, passed ones too"},
			&cli.DurationFlag{Name: "timeout", Value: scripting.DefaultTestTimeout, Usage: "bound on each test"},
			&cli.StringFlag{Name: "script-config", Usage: "YAML or JSON settings the handlers read as config (as with serve)"},
		},
		Action: func(cctx *cli.Context) error {
			dir := cctx.Args().First()
			if dir == "" {
				dir = "."
			}
			_, err := scripting.RunTests(scripting.TestConfig{
				Dir:        dir,
				ConfigFile: cctx.String("script-config"),
				Run:        cctx.String("run"),
				Timeout:    cctx.Duration("timeout"),
				Verbose:    cctx.Bool("verbose"),
				Out:        cctx.App.Writer,
			})
			switch {
			case errors.Is(err, scripting.ErrTestsFailed):
				return errLuaTestsFailed
			case err != nil:
				return fmt.Errorf("test %s: %w", dir, err)
			}
			return nil
		},
	}
}
