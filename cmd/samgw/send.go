package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "send one data message and print the reply's payload",
		ArgsUsage: "PAYLOAD (JSON, or - to read it from standard input)",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: gateway.DefaultAddr, Usage: "server address", EnvVars: envVar("addr")},
			&cli.StringFlag{Name: "route", Usage: "route of the message (default: the default handler)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for the connection and the reply"},
			oneFramePerWriteFlag(),
			connectTimeoutFlag(),
		}, clientSecurityFlags()...),
		Action: send,
	}
}

func send(cctx *cli.Context) error {
	if cctx.NArg() != 1 {
		return errors.New("send: want exactly one PAYLOAD argument (JSON, or - for standard input)")
	}
	payload := []byte(cctx.Args().First())
	if cctx.Args().First() == "-" {
		var err error
		if payload, err = io.ReadAll(io.LimitReader(cctx.App.Reader, protocol.DefaultMaxFrameSize+1)); err != nil {
			return fmt.Errorf("send: read standard input: %w", err)
		}
	}
	payload = []byte(strings.TrimSpace(string(payload)))
	if !json.Valid(payload) {
		return fmt.Errorf(`send: the payload is not valid JSON (a string must be quoted: '"hello"')`)
	}
	ctx, cancel := context.WithTimeout(cctx.Context, cctx.Duration("timeout"))
	defer cancel()
	ccfg := gateway.ClientConfig{
		Addr:             cctx.String("addr"),
		NoReconnect:      true,
		DialTimeout:      cctx.Duration("timeout"),
		OneFramePerWrite: cctx.Bool("one-frame-per-write"),
		ConnectRetry:     cctx.Duration("connect-timeout"),
		Logger:           slog.New(slog.DiscardHandler),
	}
	if err := clientSecurity(cctx, &ccfg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	client, err := gateway.NewClient(ccfg)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := client.Connect(ctx); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			return fmt.Errorf("send: %w%s", err, fixHint(pe, ccfg))
		}
		return fmt.Errorf("send: %w", err)
	}
	defer client.Disconnect("done")
	reply, err := client.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: cctx.String("route"), Payload: payload})
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			return fmt.Errorf("send: the server answered with error %s: %s%s", pe.Code, pe.Message, fixHint(pe, ccfg))
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("send: no reply within %v", cctx.Duration("timeout"))
		}
		return fmt.Errorf("send: %w", err)
	}
	out := reply.Payload
	if out == nil {
		out = []byte("null")
	}
	_, err = fmt.Fprintf(cctx.App.Writer, "%s\n", out)
	return err
}
