package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/bench"
	"github.com/secureagentmessaging/samgw/gateway"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a gateway: throughput and latency of echoed data frames",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: gateway.DefaultAddr, Usage: "server address", EnvVars: envVar("addr")},
			&cli.IntFlag{Name: "conns", Value: 16, Usage: "connections"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to run (unless --messages ends it first)"},
			&cli.IntFlag{Name: "messages", Usage: "stop after this many replies (0: run for --duration)"},
			&cli.IntFlag{Name: "size", Value: 128, Usage: "payload size in bytes"},
			&cli.IntFlag{Name: "pipeline", Value: 1, Usage: "frames in flight per connection"},
			&cli.StringFlag{Name: "route", Usage: "route of the frames"},
			&cli.StringFlag{Name: "ws", Usage: "load over WebSocket instead of TCP: the URL (ws://host:port/v1/ws); --addr is then unused"},
			&cli.BoolFlag{Name: "ws-compress", Usage: "with --ws: ask for permessage-deflate"},
			&cli.Float64Flag{Name: "rate", Usage: "open loop: frames per second in all, latency from when each was due (0: as fast as replies allow)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object on stdout"},
			&cli.IntFlag{Name: "hold", Usage: "density mode: hold this many quiet connections for --duration (keepalives only, from 127.0.0.x source addresses), timing a ping every 100 ms on one more"},
			&cli.DurationFlag{Name: "hold-keepalive", Value: 10 * time.Second, Usage: "with --hold: how often each held connection sends a keepalive"},
			&cli.IntFlag{Name: "broadcasts", Usage: "with --hold: send this many frames {\"broadcast\": i} to --broadcast-route, a second apart, and time each until every held connection has it"},
			&cli.StringFlag{Name: "broadcast-route", Value: "broadcast", Usage: "with --broadcasts: the route whose handler broadcasts (or publishes) what it gets"},
			&cli.StringFlag{Name: "hold-send", Usage: "with --hold: a JSON payload each held connection sends once to --hold-route when open (e.g. {\"subscribe\":\"room.1\"}); measuring waits for every answer"},
			&cli.StringFlag{Name: "hold-route", Usage: "with --hold-send: its route"},
		}, clientSecurityFlags()...),
		Action: runBench,
	}
}

func runBench(cctx *cli.Context) error {
	if n := cctx.Int("hold"); n > 0 {
		return runHold(cctx, n)
	}
	for _, name := range []string{"conns", "size", "pipeline"} {
		if cctx.Int(name) <= 0 {
			return fmt.Errorf("--%s must be positive, got %d", name, cctx.Int(name))
		}
	}
	cfg := bench.Config{
		Addr:     cctx.String("addr"),
		Conns:    cctx.Int("conns"),
		Pipeline: cctx.Int("pipeline"),
		Duration: cctx.Duration("duration"),
		Messages: cctx.Int("messages"),
		Size:     cctx.Int("size"),
		Route:    cctx.String("route"),
		Rate:     cctx.Float64("rate"),
	}
	if cfg.Messages > 0 {
		cfg.Duration = 0
	}
	var sec gateway.ClientConfig
	if err := clientSecurity(cctx, &sec); err != nil {
		return err
	}
	cfg.Token, cfg.SignKey = sec.Token, sec.SignKey
	if sec.TLS != nil {
		d := &tls.Dialer{Config: sec.TLS}
		cfg.Dial = d.DialContext
	}
	if url := cctx.String("ws"); url != "" {
		if sec.TLS != nil {
			return errors.New("--ws with TLS is not supported by the load generator: measure ws:// on loopback")
		}
		cfg.Dial = bench.DialWebSocket(url, cctx.Bool("ws-compress"))
	}
	if isTerminal(cctx.App.ErrWriter) {
		cfg.Progress = func(p bench.Progress) {
			fmt.Fprintf(cctx.App.ErrWriter, "\r%6.1fs  %10d replies  %10.0f/s  %d errors ",
				p.Elapsed.Seconds(), p.Received, float64(p.Received)/p.Elapsed.Seconds(), p.Errors)
		}
	}
	res, err := bench.Run(cctx.Context, cfg)
	if cfg.Progress != nil {
		fmt.Fprintln(cctx.App.ErrWriter)
	}
	if err != nil && !errors.Is(err, bench.ErrNoReplies) {
		return err
	}
	if cctx.Bool("json") {
		if err := json.NewEncoder(cctx.App.Writer).Encode(res); err != nil {
			return err
		}
	} else {
		printResult(cctx.App.Writer, res)
	}
	if err != nil {
		return fmt.Errorf("bench: %w (first error: %s)", err, res.FirstError)
	}
	if res.Errors > 0 {
		return fmt.Errorf("bench: %d of %d replies were errors or did not match (first: %s)", res.Errors, res.Received, res.FirstError)
	}
	return nil
}

func printResult(w io.Writer, r bench.Result) {
	if r.Rate > 0 {
		fmt.Fprintf(w, "%d conns, open loop at %.0f frames/s, %d-byte payloads, %.1fs\n", r.Conns, r.Rate, r.Size, r.ElapsedSec)
	} else {
		fmt.Fprintf(w, "%d conns × %d in flight, %d-byte payloads, %.1fs\n", r.Conns, r.Pipeline, r.Size, r.ElapsedSec)
	}
	fmt.Fprintf(w, "frames:   %d sent, %d received, %d errors\n", r.Sent, r.Received, r.Errors)
	fmt.Fprintf(w, "rate:     %.0f frames/s, %.2f MB/s\n", r.FramesPerSec, r.MBPerSec)
	fmt.Fprintf(w, "latency:  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", r.P50, r.P90, r.P99, r.P999, r.Max)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

// isTerminal reports whether w is a character device, to show progress.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// runHold is `samgw bench --hold N`: it prints "held N connections" on
// stderr once all are open (so a harness can measure the server then) and
// the result at the end.
func runHold(cctx *cli.Context, n int) error {
	var hello []byte
	if s := cctx.String("hold-send"); s != "" {
		if !json.Valid([]byte(s)) {
			return fmt.Errorf("--hold-send: not JSON: %s", s)
		}
		hello = []byte(s)
	}
	res, err := bench.Hold(cctx.Context, bench.HoldConfig{
		Hello: hello, HelloRoute: cctx.String("hold-route"),
		Addrs: strings.Split(cctx.String("addr"), ","), Conns: n, Duration: cctx.Duration("duration"),
		KeepAlive: cctx.Duration("hold-keepalive"), Token: cctx.String("token"),
		Broadcasts: cctx.Int("broadcasts"), BroadcastRoute: cctx.String("broadcast-route"),
		Opened: func() { fmt.Fprintf(cctx.App.ErrWriter, "held %d connections\n", n) },
	})
	if err != nil {
		return err
	}
	if cctx.Bool("json") {
		return json.NewEncoder(cctx.App.Writer).Encode(res)
	}
	fmt.Fprintf(cctx.App.Writer, "held %d connections (%d lost); ping every 100 ms: %d pings, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		res.Conns, res.Lost, res.Pings, res.PingP50, res.PingP99, res.PingMax)
	for i, b := range res.Broadcasts {
		fmt.Fprintf(cctx.App.Writer, "broadcast %d: reached %d of %d, the last after %.1f ms\n", i, b.Reached, res.Conns, b.LastMs)
	}
	return nil
}
