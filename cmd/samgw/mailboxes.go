package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/cluster"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/metrics"
	"github.com/secureagentmessaging/samgw/scripting"
)

// storeHooks are what the stores ask of the server and the engine, which
// are made after them.
type storeHooks struct {
	auth    bool // identities are configured: only they have mailboxes
	served  *atomic.Pointer[gateway.Server]
	scripts *atomic.Pointer[scripting.Engine]
	metrics *metrics.Metrics // nil without --metrics-listen
}

// durable is what durable delivery keeps on JetStream: the mailboxes, the
// work queues and (with --topic-history) topic history.
type durable struct {
	boxes   *delivery.Mailboxes
	queues  *delivery.Queues
	history *delivery.History // nil without --topic-history
}

// openMailboxes starts durable delivery (mailboxes, work queues, topic
// history): on the cluster's JetStream with --nats, else on an embedded one
// under --data-dir. It returns an empty durable with --no-mailboxes, and a
// function that stops what it started (after the server has stopped).
func openMailboxes(cctx *cli.Context, log *slog.Logger, clu *cluster.Cluster, hooks storeHooks) (durable, func(), error) {
	var none durable
	rules, err := historyRules(cctx)
	if err != nil {
		return none, nil, err
	}
	if cctx.Bool("no-mailboxes") {
		if len(rules) > 0 {
			return none, nil, errors.New("--topic-history needs the store that --no-mailboxes turns off")
		}
		log.Info("Durable delivery is off (--no-mailboxes): no mailboxes, no work queues, no topic history")
		return none, func() {}, nil
	}
	cfg, err := mailboxConfig(cctx, hooks)
	if err != nil {
		return none, nil, err
	}
	if d := cctx.Duration("queue-node-timeout"); d < time.Second {
		return none, nil, fmt.Errorf("--queue-node-timeout %v: want 1s or more", d)
	}
	historyBytes, err := positiveSize(cctx, "topic-history-bytes")
	if err != nil {
		return none, nil, err
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
			return none, nil, errors.New("--data-replicas: the embedded store keeps one copy; replicas need a JetStream cluster (--nats)")
		}
		emb, err := delivery.StartEmbedded(delivery.EmbeddedConfig{Dir: cctx.String("data-dir"), SyncAlways: cctx.Bool("data-sync")})
		if err != nil {
			return none, nil, fmt.Errorf("--data-dir: %w", err)
		}
		stops = append(stops, emb.Shutdown)
		var nc *nats.Conn
		if nc, err = emb.Connect("samgw"); err != nil {
			stop()
			return none, nil, err
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
		return none, nil, fmt.Errorf("mailboxes: %w", err)
	}
	stops = append(stops, boxes.Close)
	log.Info("Mailboxes ready", "store", where, "max_messages", cfg.MaxMessages, "max_age", cfg.MaxAge.String(),
		"discard", cctx.String("mailbox-discard"), "sync_always", cctx.Bool("data-sync"))
	maxFrame, err := parseSize(cctx.String("max-frame"))
	if err != nil {
		stop()
		return none, nil, fmt.Errorf("--max-frame: %w", err)
	}
	queues, err := delivery.NewQueues(ctx, delivery.QueueConfig{
		Conn: cfg.Conn, Replicas: cfg.Replicas, NodeTimeout: cctx.Duration("queue-node-timeout"), Logger: log,
		MaxPayload: maxFrame - jobFrameOverhead,
		OnEvent: func(e delivery.JobEvent) {
			if hooks.metrics != nil {
				hooks.metrics.JobEvent(e.Event)
			}
			if engine := hooks.scripts.Load(); engine != nil {
				engine.JobEvent(e)
			}
		},
	})
	if err != nil {
		stop()
		return none, nil, fmt.Errorf("work queues: %w", err)
	}
	stops = append(stops, queues.Close)
	d := durable{boxes: boxes, queues: queues}
	if len(rules) > 0 {
		d.history, err = delivery.NewHistory(ctx, delivery.HistoryConfig{Conn: cfg.Conn, Rules: rules, Replicas: cfg.Replicas,
			MaxBytes: int64(historyBytes), MaxPayload: int32(maxFrame), Logger: log})
		if err != nil {
			stop()
			return none, nil, fmt.Errorf("--topic-history: %w", err)
		}
		stops = append(stops, d.history.Close)
		for _, r := range rules {
			log.Info("Topic history", "pattern", r.Pattern, "keep", r.Keep)
		}
	}
	return d, stop, nil
}

// historyRules reads the --topic-history flags (PATTERN=N each).
func historyRules(cctx *cli.Context) ([]delivery.HistoryRule, error) {
	var rules []delivery.HistoryRule
	for _, s := range cctx.StringSlice("topic-history") {
		r, err := delivery.ParseHistoryRule(s)
		if err != nil {
			return nil, fmt.Errorf("--topic-history: %w", err)
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, nil
	}
	if err := delivery.CheckHistoryRules(rules); err != nil {
		return nil, fmt.Errorf("--topic-history: %w", err)
	}
	return rules, nil
}

// jobFrameOverhead is room in a frame for what a job's data frame adds to
// its payload: type, id and job (each up to 256 bytes), route, timestamp.
const jobFrameOverhead = 1024

// mailboxConfig reads the --mailbox-* flags.
func mailboxConfig(cctx *cli.Context, hooks storeHooks) (delivery.Config, error) {
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
	if hooks.auth {
		// The identities of the file in force: a reload adds and removes
		// mailboxes' owners.
		cfg.Known = func(identity string) bool {
			srv := hooks.served.Load()
			return srv != nil && srv.KnowsIdentity(identity)
		}
	}
	return cfg, nil
}
