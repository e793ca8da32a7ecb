package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// run executes the command line args and returns the exit code. It is main
// without the process: tests call it with their own context and streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	if err := app.RunContext(ctx, negativePayload(args)); err != nil {
		fmt.Fprintf(stderr, "samgw: %v\n", err)
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		return 1
	}
	return 0
}

// newApp builds the command line. Every flag of every command can be set
// by its environment variable (see envVar).
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "samgw",
		Usage:     "a scriptable, secure messaging gateway for software agents",
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Commands: []*cli.Command{
			serveCommand(),
			clientCommand(),
			sendCommand(),
			benchCommand(),
			certsCommand(),
			tokenCommand(),
			keygenCommand(),
			checkCommand(),
			luaTestCommand(),
			luaTypesCommand(),
			versionCommand(),
		},
		// Errors are printed once, by run, with the command's name.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	for _, cmd := range app.Commands {
		for _, f := range cmd.Flags {
			setEnvVar(f)
		}
	}
	return app
}

// setEnvVar gives a flag its SAMGW_ variable when it has none yet. Every
// flag type of urfave/cli has an EnvVars field.
func setEnvVar(f cli.Flag) {
	vars := reflect.ValueOf(f).Elem().FieldByName("EnvVars")
	if vars.IsValid() && vars.Len() == 0 {
		vars.Set(reflect.ValueOf(envVar(f.Names()[0])))
	}
}

// negativePayload lets `samgw send -5` send the number -5: the flag
// parser would take a last argument that is a negative number for a flag,
// so "--" (the end of the flags) is put before it.
func negativePayload(args []string) []string {
	if len(args) < 3 || args[1] != "send" || slices.Contains(args, "--") {
		return args
	}
	last := args[len(args)-1]
	if len(last) < 2 || last[0] != '-' || last[1] < '0' || last[1] > '9' {
		return args
	}
	out := append([]string(nil), args[:len(args)-1]...)
	return append(out, "--", last)
}

// envVar names the environment variable that may set a flag.
func envVar(flag string) []string {
	return []string{"SAMGW_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// logFlags select the logger of serve and client.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: envVar("log-level")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: envVar("log-format")},
	}
}

// newLogger builds the slog logger the log flags ask for, writing to w.
func newLogger(cctx *cli.Context, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cctx.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", cctx.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cctx.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", cctx.String("log-format"))
}

// parseSize reads a byte size: a number with an optional unit B, KiB, MiB
// or GiB (K/KB, M/MB and G/GB mean the same powers of 1024).
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffixes []string
		mult     int
	}{
		{[]string{"GiB", "GB", "G"}, 1 << 30},
		{[]string{"MiB", "MB", "M"}, 1 << 20},
		{[]string{"KiB", "KB", "K", "k"}, 1 << 10},
		{[]string{"B"}, 1},
	}
	mult := 1
unit:
	for _, u := range units {
		for _, suf := range u.suffixes {
			if strings.HasSuffix(t, suf) {
				t, mult = strings.TrimSpace(strings.TrimSuffix(t, suf)), u.mult
				break unit
			}
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("invalid size %q: want a positive number with an optional unit, such as 1MiB", s)
	}
	return n * mult, nil
}

// oneFramePerWriteFlag is --one-frame-per-write, for peers that parse one
// JSON object per read (see docs/protocol.md, "Peers that parse one frame per
// read").
func oneFramePerWriteFlag() cli.Flag {
	return &cli.BoolFlag{Name: "one-frame-per-write", EnvVars: envVar("one-frame-per-write"),
		Usage: "write every frame on its own, paced 5 ms apart, for peers that parse one JSON object per read (costs throughput)"}
}

// connectTimeoutFlag is --connect-timeout of send and client: how long the
// first connect is retried while the server refuses (it may be starting).
func connectTimeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "connect-timeout", Value: 3 * time.Second, EnvVars: envVar("connect-timeout"),
		Usage: "keep retrying a refused first connect this long (a server that is still starting)"}
}
