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
		Usage:     "send one data message and print the reply's payload (or, with --resume N, take N messages from the identity's mailbox)",
		ArgsUsage: "PAYLOAD (JSON, or - to read it from standard input; none with --resume)",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: gateway.DefaultAddr, Usage: "server address; several, comma-separated, are tried in turn", EnvVars: envVar("addr")},
			&cli.StringFlag{Name: "route", Usage: "route of the message (default: the default handler)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for the connection and the reply"},
			&cli.IntFlag{Name: "resume", Usage: "instead of sending, resume the identity's mailbox (needs --token), print N messages as JSON lines {seq, id, route, payload} and ack them"},
			oneFramePerWriteFlag(),
			connectTimeoutFlag(),
		}, clientSecurityFlags()...),
		Action: send,
	}
}

func send(cctx *cli.Context) error {
	if cctx.IsSet("resume") {
		return takeMailbox(cctx)
	}
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
	client, ccfg, err := connectSend(ctx, cctx, gateway.ClientConfig{NoResume: true})
	if err != nil {
		return err
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

// connectSend connects a client for send with the address, timeout and
// security flags on top of base.
func connectSend(ctx context.Context, cctx *cli.Context, base gateway.ClientConfig) (*gateway.Client, gateway.ClientConfig, error) {
	ccfg := base
	ccfg.Addr = cctx.String("addr")
	ccfg.NoReconnect = true
	ccfg.DialTimeout = cctx.Duration("timeout")
	ccfg.OneFramePerWrite = cctx.Bool("one-frame-per-write")
	ccfg.ConnectRetry = cctx.Duration("connect-timeout")
	ccfg.Logger = slog.New(slog.DiscardHandler)
	if err := clientSecurity(cctx, &ccfg); err != nil {
		return nil, ccfg, fmt.Errorf("send: %w", err)
	}
	client, err := gateway.NewClient(ccfg)
	if err != nil {
		return nil, ccfg, fmt.Errorf("send: %w", err)
	}
	if err := client.Connect(ctx); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			return nil, ccfg, fmt.Errorf("send: %w%s", err, fixHint(pe, ccfg))
		}
		return nil, ccfg, fmt.Errorf("send: %w", err)
	}
	return client, ccfg, nil
}

// mailboxLine is how send --resume prints a mailbox message.
type mailboxLine struct {
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	Route   string          `json:"route,omitempty"`
	Payload json.RawMessage `json:"payload"`
}

// takeMailbox is send --resume N: it prints N messages of the identity's
// mailbox, in order, and acks them.
func takeMailbox(cctx *cli.Context) error {
	want := cctx.Int("resume")
	if want < 0 || cctx.NArg() != 0 {
		return errors.New("send --resume N: N must be 0 or more, and no PAYLOAD goes with it")
	}
	if cctx.String("token") == "" {
		return errors.New("send --resume: a mailbox belongs to an identity: give its --token")
	}
	ctx, cancel := context.WithTimeout(cctx.Context, cctx.Duration("timeout"))
	defer cancel()
	got := make(chan mailboxLine, want+1)
	client, _, err := connectSend(ctx, cctx, gateway.ClientConfig{ManualAck: true, OnMessage: func(m *protocol.Message) {
		if m.Seq != 0 {
			select {
			case got <- mailboxLine{Seq: m.Seq, ID: m.ID, Route: m.Route, Payload: append(json.RawMessage(nil), m.Payload...)}:
			default: // past N: left for the next taker
			}
		}
	}})
	if err != nil {
		return err
	}
	defer client.Disconnect("done")
	if resumed, _ := client.Resumed(); !resumed {
		return errors.New("send --resume: the server did not resume the mailbox (it runs with --no-mailboxes, or its store is unreachable)")
	}
	for i := range want {
		select {
		case line := <-got:
			b, _ := json.Marshal(line)
			if _, err := fmt.Fprintf(cctx.App.Writer, "%s\n", b); err != nil {
				return err
			}
			if i == want-1 {
				if err := client.Ack(line.Seq); err != nil {
					return fmt.Errorf("send --resume: %w", err)
				}
			}
		case <-ctx.Done():
			return fmt.Errorf("send --resume: %d of %d mailbox messages within %v", i, want, cctx.Duration("timeout"))
		}
	}
	return nil
}
