package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/scripting"
)

// errCheckFailed makes `samgw check` exit non-zero after listing the errors.
var errCheckFailed = errors.New("the scripts have errors")

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "compile and load every Lua file of a scripts directory as a reload would, and report every problem",
		ArgsUsage: "[DIR]",
		Description: "Every route file is loaded in a state of its own, so one broken file does not hide the next.\n" +
			"Errors (file:line: error: …) would make a reload fail; warnings (on_connect or on_close outside\n" +
			"default.lua, which never run) would not. Exits 1 when there is an error. DIR defaults to \".\".",
		Action: func(cctx *cli.Context) error {
			dir := cctx.Args().First()
			if dir == "" {
				dir = "."
			}
			problems, err := scripting.Check(scripting.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return fmt.Errorf("check %s: %w", dir, err)
			}
			return reportProblems(cctx.App.Writer, dir, problems)
		},
	}
}

// reportProblems prints one line a problem and a summary; it fails when
// one of them is an error.
func reportProblems(w io.Writer, dir string, problems []scripting.Problem) error {
	errs, warnings := 0, 0
	for _, p := range problems {
		fmt.Fprintln(w, p)
		if p.Warning {
			warnings++
		} else {
			errs++
		}
	}
	fmt.Fprintf(w, "%s: %d errors, %d warnings\n", dir, errs, warnings)
	if errs > 0 {
		return errCheckFailed
	}
	return nil
}
