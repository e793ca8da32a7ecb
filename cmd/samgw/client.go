package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

func clientCommand() *cli.Command {
	return &cli.Command{
		Name:  "client",
		Usage: "run the demo client: send data, ping at 5 s, data at 10 s, disconnect at 30 s",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: gateway.DefaultAddr, Usage: "server address", EnvVars: envVar("addr")},
			&cli.Float64Flag{Name: "time-scale", Value: 1, Usage: "multiply every delay and timeout (0.01 runs the 30 s demo in 0.3 s)", EnvVars: envVar("time-scale")},
		}, logFlags()...),
		Action: runDemo,
	}
}

// printer writes whole lines from several goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// runDemo reproduces the prototype's demo client.
func runDemo(cctx *cli.Context) error {
	log, err := newLogger(cctx, cctx.App.ErrWriter)
	if err != nil {
		return err
	}
	scale := cctx.Float64("time-scale")
	if scale <= 0 {
		return fmt.Errorf("--time-scale must be positive, got %v", scale)
	}
	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	out := &printer{w: cctx.App.Writer}
	var leaving atomic.Bool // our own close is acknowledged: not news
	client := gateway.NewClient(gateway.ClientConfig{
		Addr:              cctx.String("addr"),
		KeepAliveInterval: scaled(gateway.DefaultKeepAliveInterval),
		KeepAliveTimeout:  scaled(gateway.DefaultKeepAliveTimeout),
		Logger:            log,
		OnMessage: func(m *protocol.Message) {
			switch m.Type {
			case protocol.TypeData:
				out.line("Data received: %s", m.Payload)
			case protocol.TypePong:
				out.line("Pong received")
			case protocol.TypeKeepAlive:
				out.line("Keep-alive received")
			case protocol.TypeError:
				out.line("Error received: %s", m.Payload)
			case protocol.TypeClose:
				if !leaving.Load() {
					out.line("Server closed the connection: %s", m.Payload)
				}
			}
		},
	})
	ctx := cctx.Context
	if err := client.Connect(ctx); err != nil {
		return err
	}
	out.line("Connected to server")
	steps := []struct {
		at   time.Duration
		step func() error
	}{
		{0, func() error {
			_, err := client.Send(json.RawMessage(`{"name":"John","age":30,"email":"john@example.com"}`))
			return err
		}},
		{5 * time.Second, func() error { _, err := client.Ping(); return err }},
		{10 * time.Second, func() error {
			_, err := client.Send(map[string]any{"message": "Hello again!", "timestamp": protocol.Now()})
			return err
		}},
		{30 * time.Second, func() error { out.line("Disconnecting after 30 seconds..."); return nil }},
	}
	start := time.Now()
	for _, s := range steps {
		if err := sleepUntil(ctx, start.Add(scaled(s.at))); err != nil {
			out.line("Interrupted")
			break
		}
		if err := s.step(); err != nil {
			leaving.Store(true)
			client.Disconnect("client error")
			return fmt.Errorf("demo: %w", err)
		}
	}
	leaving.Store(true)
	client.Disconnect("client finished")
	out.line("Disconnected from server")
	return nil
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
