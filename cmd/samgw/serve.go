package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/gateway"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the gateway",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: gateway.DefaultAddr, Usage: "TCP address to listen on", EnvVars: envVar("listen")},
			&cli.DurationFlag{Name: "keepalive-timeout", Value: gateway.DefaultKeepAliveTimeout,
				Usage: "close a connection that sent no frame for this long", EnvVars: envVar("keepalive-timeout")},
			&cli.DurationFlag{Name: "keepalive-interval", Value: gateway.DefaultKeepAliveInterval,
				Usage: "send a keepalive frame to every connection this often", EnvVars: envVar("keepalive-interval")},
			&cli.StringFlag{Name: "max-frame", Value: "1MiB", Usage: "largest frame accepted, not counting the line ending", EnvVars: envVar("max-frame")},
			&cli.IntFlag{Name: "max-conns", Value: gateway.DefaultMaxConns, Usage: "most connections open at once", EnvVars: envVar("max-conns")},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: gateway.DefaultShutdownTimeout,
				Usage: "how long a graceful shutdown may take", EnvVars: envVar("shutdown-timeout")},
		}, logFlags()...),
		Action: serve,
	}
}

func serve(cctx *cli.Context) error {
	log, err := newLogger(cctx, cctx.App.ErrWriter)
	if err != nil {
		return err
	}
	maxFrame, err := parseSize(cctx.String("max-frame"))
	if err != nil {
		return fmt.Errorf("--max-frame: %w", err)
	}
	for _, name := range []string{"keepalive-timeout", "keepalive-interval", "shutdown-timeout"} {
		if d := cctx.Duration(name); d <= 0 {
			return fmt.Errorf("--%s must be positive, got %v", name, d)
		}
	}
	if cctx.Int("max-conns") <= 0 {
		return fmt.Errorf("--max-conns must be positive, got %d", cctx.Int("max-conns"))
	}
	if cctx.Duration("keepalive-interval") >= cctx.Duration("keepalive-timeout") {
		log.Warn("The keep-alive interval is not shorter than the timeout: idle clients that only answer keepalives may be dropped")
	}
	srv := gateway.NewServer(gateway.Config{
		Addr:              cctx.String("listen"),
		KeepAliveTimeout:  cctx.Duration("keepalive-timeout"),
		KeepAliveInterval: cctx.Duration("keepalive-interval"),
		MaxFrameSize:      maxFrame,
		MaxConns:          cctx.Int("max-conns"),
		ShutdownTimeout:   cctx.Duration("shutdown-timeout"),
		Logger:            log,
	})
	start := time.Now()
	if err := srv.ListenAndServe(cctx.Context); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("Server stopped", "uptime", time.Since(start).Round(time.Millisecond))
	return nil
}
