package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/scripting"
	"github.com/secureagentmessaging/samgw/scripts"
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
			&cli.StringFlag{Name: "scripts", Usage: "directory of Lua handlers, reloaded on change (default: the embedded echo)", EnvVars: envVar("scripts")},
			&cli.BoolFlag{Name: "no-scripts", Usage: "serve the built-in Go echo instead of Lua handlers", EnvVars: envVar("no-scripts")},
			&cli.DurationFlag{Name: "script-timeout", Value: scripting.DefaultTimeout,
				Usage: "how long one handler call may run", EnvVars: envVar("script-timeout")},
			&cli.IntFlag{Name: "lua-states", Value: scripting.DefaultMaxStates,
				Usage: "most Lua states per scripts version: how many handler calls can run at once", EnvVars: envVar("lua-states")},
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
	engine, err := newEngine(cctx, log)
	if err != nil {
		return err
	}
	var handler gateway.Handler = gateway.Echo
	if engine != nil {
		handler = engine
	}
	srv := gateway.NewServer(gateway.Config{
		Addr:              cctx.String("listen"),
		KeepAliveTimeout:  cctx.Duration("keepalive-timeout"),
		KeepAliveInterval: cctx.Duration("keepalive-interval"),
		MaxFrameSize:      maxFrame,
		MaxConns:          cctx.Int("max-conns"),
		ShutdownTimeout:   cctx.Duration("shutdown-timeout"),
		Handler:           handler,
		Logger:            log,
	})

	// Reloads run beside the server: on file changes and on SIGHUP.
	ctx, stopReloads := context.WithCancel(cctx.Context)
	var reloaders sync.WaitGroup
	if engine != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		reloaders.Add(1)
		go func() {
			defer reloaders.Done()
			reloadOnSignal(ctx, hup, engine)
		}()
		if cctx.String("scripts") != "" {
			reloaders.Add(1)
			go func() {
				defer reloaders.Done()
				if err := engine.Watch(ctx, 0); err != nil {
					log.Error("Not watching the scripts; reload with SIGHUP", "error", err)
				}
			}()
		}
	}
	start := time.Now()
	err = srv.ListenAndServe(cctx.Context)
	stopReloads()
	reloaders.Wait()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("Server stopped", "uptime", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// newEngine loads the Lua handlers the flags ask for: nil with --no-scripts.
func newEngine(cctx *cli.Context, log *slog.Logger) (*scripting.Engine, error) {
	if cctx.Bool("no-scripts") {
		if cctx.String("scripts") != "" {
			return nil, errors.New("--scripts and --no-scripts exclude each other")
		}
		log.Info("Serving the built-in Go echo (--no-scripts)")
		return nil, nil
	}
	if d := cctx.Duration("script-timeout"); d <= 0 {
		return nil, fmt.Errorf("--script-timeout must be positive, got %v", d)
	}
	if n := cctx.Int("lua-states"); n <= 0 {
		return nil, fmt.Errorf("--lua-states must be positive, got %d", n)
	}
	cfg := scripting.Config{
		Dir:       cctx.String("scripts"),
		Timeout:   cctx.Duration("script-timeout"),
		MaxStates: cctx.Int("lua-states"),
		Logger:    log,
	}
	if cfg.Dir == "" {
		cfg.FS = scripts.Handlers()
	}
	engine, err := scripting.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("--scripts: %w", err)
	}
	return engine, nil
}

// reloadOnSignal reloads the scripts on every signal (SIGHUP) until ctx
// ends.
func reloadOnSignal(ctx context.Context, signals <-chan os.Signal, engine *scripting.Engine) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			engine.Reload() //nolint:errcheck // logged; the old scripts keep serving
		}
	}
}
