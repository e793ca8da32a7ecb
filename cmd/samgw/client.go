package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/scenario"
	"github.com/secureagentmessaging/samgw/scripts"
)

func clientCommand() *cli.Command {
	return &cli.Command{
		Name:  "client",
		Usage: "run a Lua client scenario (default: the demo) against a gateway",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: gateway.DefaultAddr, Usage: "server address; several, comma-separated, spread --clients over them (and each fails over to the others)", EnvVars: envVar("addr")},
			&cli.StringFlag{Name: "scenario", Usage: "Lua scenario file (default: the embedded demo)"},
			&cli.StringSliceFlag{Name: "arg", Usage: "k=v, passed to the scenario as args.k (repeatable)"},
			&cli.IntFlag{Name: "clients", Value: 1, Usage: "run this many copies at once, each on its own connection"},
			&cli.BoolFlag{Name: "resume", Usage: "with a token, take the identity's mailbox: its messages reach the scenario's data handlers (with msg.seq) and are acked after them"},
			&cli.StringFlag{Name: "token-file", Usage: "file of tokens, one a line (# comments): copy i of --clients authenticates with line i, in turn (in place of --token)", EnvVars: envVar("token-file")},
			&cli.DurationFlag{Name: "keepalive-interval", Value: gateway.DefaultKeepAliveInterval, Usage: "send a keepalive this often (scaled by --time-scale)", EnvVars: envVar("keepalive-interval")},
			&cli.DurationFlag{Name: "keepalive-timeout", Value: gateway.DefaultKeepAliveTimeout, Usage: "a server silent this long is dead: reconnect (scaled by --time-scale)", EnvVars: envVar("keepalive-timeout")},
			oneFramePerWriteFlag(),
			connectTimeoutFlag(),
			&cli.Float64Flag{Name: "time-scale", Value: 1, Usage: "multiply every sleep and timeout (0.01 runs the 30 s demo in 0.3 s)", EnvVars: envVar("time-scale")},
		}, append(clientSecurityFlags(), logFlags()...)...),
		Action: runClient,
	}
}

func runClient(cctx *cli.Context) error {
	log, err := newLogger(cctx, cctx.App.ErrWriter)
	if err != nil {
		return err
	}
	scale := cctx.Float64("time-scale")
	if scale <= 0 {
		return fmt.Errorf("--time-scale must be positive, got %v", scale)
	}
	n := cctx.Int("clients")
	if n <= 0 {
		return fmt.Errorf("--clients must be positive, got %d", n)
	}
	args := make(map[string]string)
	for _, kv := range cctx.StringSlice("arg") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--arg %q: want k=v", kv)
		}
		args[k] = v
	}
	cfg := scenario.Config{
		Name:   "demo.lua",
		Source: scripts.Demo(),
		// A scenario drives a connection; it does not take (and ack) the
		// identity's mailbox unless the scenario's author says so.
		Client: gateway.ClientConfig{Addr: cctx.String("addr"), NoResume: !cctx.Bool("resume"), OneFramePerWrite: cctx.Bool("one-frame-per-write"),
			ConnectRetry: cctx.Duration("connect-timeout"), KeepAliveInterval: cctx.Duration("keepalive-interval"),
			KeepAliveTimeout: cctx.Duration("keepalive-timeout")},
		Args:      args,
		TimeScale: scale,
		Out:       cctx.App.Writer,
		Logger:    log,
	}
	if err := clientSecurity(cctx, &cfg.Client); err != nil {
		return err
	}
	if err := cfg.Client.Validate(); err != nil {
		return err
	}
	if file := cctx.String("token-file"); file != "" {
		if cctx.String("token") != "" {
			return errors.New("--token and --token-file exclude each other")
		}
		if cfg.Tokens, err = readTokens(file); err != nil {
			return err
		}
	}
	if path := cctx.String("scenario"); path != "" {
		src, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("--scenario: %w", err)
		}
		cfg.Name, cfg.Source = filepath.Base(path), src
	}
	if n == 1 {
		if res := scenario.Run(cctx.Context, cfg); res.Err != nil {
			if res.Refused != nil {
				return fmt.Errorf("%w%s", res.Err, fixHint(res.Refused, cfg.Client))
			}
			return res.Err
		}
		return nil
	}
	sum := scenario.RunMany(cctx.Context, cfg, n)
	w := cctx.App.Writer
	fmt.Fprintf(w, "%d clients: %d passed, %d failed\n", n, sum.Passed, sum.Failed)
	if c := sum.Requests.Count(); c > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		q := sum.Requests.Quantile
		fmt.Fprintf(w, "requests: %d, latency p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n",
			c, ms(q(0.5)), ms(q(0.9)), ms(q(0.99)), ms(sum.Requests.Max()))
	}
	for _, e := range sum.Errors {
		fmt.Fprintf(w, "  %s\n", e)
	}
	if sum.Failed > 0 {
		return errors.New(sum.Errors[0])
	}
	return nil
}

// readTokens reads a --token-file: one token a line; blank lines and lines
// starting with # are skipped.
func readTokens(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	var tokens []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			tokens = append(tokens, line)
		}
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("--token-file %s: no tokens", file)
	}
	return tokens, nil
}
