package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/cluster"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
)

// openMailboxes starts durable delivery: on the cluster's JetStream with
// --nats, else on an embedded one under --data-dir. It returns nil
// mailboxes with --no-mailboxes, and a function that stops what it started
// (after the server has stopped).
func openMailboxes(cctx *cli.Context, log *slog.Logger, clu *cluster.Cluster, auth *gateway.AuthConfig) (*delivery.Mailboxes, func(), error) {
	if cctx.Bool("no-mailboxes") {
		log.Info("Durable delivery is off (--no-mailboxes)")
		return nil, func() {}, nil
	}
	cfg, err := mailboxConfig(cctx, auth)
	if err != nil {
		return nil, nil, err
	}
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	where := ""
	if clu != nil {
		cfg.Conn = clu.Conn()
		where = "the cluster's JetStream"
	} else {
		if cctx.Int("data-replicas") != 1 {
			return nil, nil, errors.New("--data-replicas: the embedded store keeps one copy; replicas need a JetStream cluster (--nats)")
		}
		emb, err := delivery.StartEmbedded(delivery.EmbeddedConfig{Dir: cctx.String("data-dir"), SyncAlways: cctx.Bool("data-sync")})
		if err != nil {
			return nil, nil, fmt.Errorf("--data-dir: %w", err)
		}
		stops = append(stops, emb.Shutdown)
		var nc *nats.Conn
		if nc, err = emb.Connect("samgw"); err != nil {
			stop()
			return nil, nil, err
		}
		stops = append(stops, nc.Close)
		cfg.Conn = nc
		where = emb.Dir()
	}
	ctx, cancel := context.WithTimeout(cctx.Context, 30*time.Second)
	defer cancel()
	cfg.Logger = log
	boxes, err := delivery.New(ctx, cfg)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("mailboxes: %w", err)
	}
	stops = append(stops, boxes.Close)
	log.Info("Mailboxes ready", "store", where, "max_messages", cfg.MaxMessages, "max_age", cfg.MaxAge.String(),
		"discard", cctx.String("mailbox-discard"), "sync_always", cctx.Bool("data-sync"))
	return boxes, stop, nil
}

// mailboxConfig reads the --mailbox-* flags.
func mailboxConfig(cctx *cli.Context, auth *gateway.AuthConfig) (delivery.Config, error) {
	var cfg delivery.Config
	storeBytes, err := positiveSize(cctx, "mailbox-store-bytes")
	if err != nil {
		return cfg, err
	}
	switch d := cctx.String("mailbox-discard"); d {
	case "new", "old":
		cfg.DiscardOld = d == "old"
	default:
		return cfg, fmt.Errorf(`--mailbox-discard %q: want "new" or "old"`, d)
	}
	for _, name := range []string{"mailbox-max-age", "mailbox-dedupe-window"} {
		if d := cctx.Duration(name); d <= 0 {
			return cfg, fmt.Errorf("--%s must be positive, got %v", name, d)
		}
	}
	if n := cctx.Int64("mailbox-max-messages"); n <= 0 {
		return cfg, fmt.Errorf("--mailbox-max-messages must be positive, got %d", n)
	}
	if n := cctx.Int("mailbox-max-inflight"); n <= 0 {
		return cfg, fmt.Errorf("--mailbox-max-inflight must be positive, got %d", n)
	}
	if n := cctx.Int("data-replicas"); n < 1 || n > 5 {
		return cfg, fmt.Errorf("--data-replicas %d: want 1 to 5", n)
	}
	cfg.MaxMessages = cctx.Int64("mailbox-max-messages")
	cfg.MaxAge = cctx.Duration("mailbox-max-age")
	cfg.MaxBytes = int64(storeBytes)
	cfg.DedupeWindow = cctx.Duration("mailbox-dedupe-window")
	cfg.MaxInFlight = cctx.Int("mailbox-max-inflight")
	cfg.Replicas = cctx.Int("data-replicas")
	if auth != nil {
		names := make(map[string]bool, len(auth.Identities))
		for _, id := range auth.Identities {
			names[id.Name] = true
		}
		cfg.Known = func(identity string) bool { return names[identity] }
	}
	return cfg, nil
}
