package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version from the build info is used.
var version = ""

func versionString() string {
	v := version
	if v == "" {
		v = buildVersion()
	}
	return fmt.Sprintf("samgw %s %s/%s %s", v, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// buildVersion is the module version from the build info or, for a build
// from a checkout ("(devel)"), the VCS revision and its date, marked
// "+dirty" when the tree had uncommitted changes.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	return versionOf(info)
}

// versionOf is buildVersion for a given build info: one word, such as
// "v1.2.3", "v0.0.0-20261130035704-afec5453bcc5+dirty" or
// "afec5453bcc5+dirty@2026-11-30T03:57:04Z".
func versionOf(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, when, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if when != "" {
		when = "@" + when
	}
	return rev + dirty + when
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(cctx *cli.Context) error {
			_, err := fmt.Fprintln(cctx.App.Writer, versionString())
			return err
		},
	}
}
