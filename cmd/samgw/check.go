package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/scripting"
)

// errCheckFailed makes `samgw check` exit non-zero after listing the errors.
var errCheckFailed = errors.New("the scripts have errors")

// errIdentitiesInvalid makes `samgw check --identities` exit non-zero.
var errIdentitiesInvalid = errors.New("the identities file has an error")

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "compile and load every Lua file of a scripts directory as a reload would, and report every problem",
		ArgsUsage: "[DIR]",
		Description: "Every route file is loaded in a state of its own, so one broken file does not hide the next.\n" +
			"Errors (file:line: error: …) would make a reload fail; warnings (on_connect or on_close outside\n" +
			"default.lua, which never run) would not. Exits 1 when there is an error. DIR defaults to \".\".\n" +
			"With --identities FILE, checks that file as serve would load it (roles, patterns, references;\n" +
			"errors as file:line), and the scripts only when DIR is given too.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "identities", Usage: "check this identities file (roles included) instead of, or with DIR, besides the scripts", EnvVars: envVar("identities")},
		},
		Action: func(cctx *cli.Context) error {
			if file := cctx.String("identities"); file != "" {
				f, err := loadIdentities(file)
				if err != nil {
					fmt.Fprintln(cctx.App.Writer, strings.TrimPrefix(err.Error(), "--identities "))
					return errIdentitiesInvalid
				}
				fmt.Fprintf(cctx.App.Writer, "%s: ok: %d identities, %d roles (sha256 %s)\n", file, len(f.Identities), len(f.Roles), f.Digest[:12])
				if cctx.Args().Len() == 0 {
					return nil
				}
			}
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
