package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/secureagentmessaging/samgw/cluster"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gctune"
	"github.com/secureagentmessaging/samgw/metrics"
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
			&cli.StringFlag{Name: "max-pending-bytes", Value: "256MiB", Usage: "most outbound bytes all connections may hold waiting to be written; past it the largest queues are closed as slow consumers", EnvVars: envVar("max-pending-bytes")},
			oneFramePerWriteFlag(),
			&cli.DurationFlag{Name: "shutdown-timeout", Value: gateway.DefaultShutdownTimeout,
				Usage: "how long a graceful shutdown may take", EnvVars: envVar("shutdown-timeout")},
			&cli.StringFlag{Name: "scripts", Usage: "directory of Lua handlers, reloaded on change (default: the embedded echo)", EnvVars: envVar("scripts")},
			&cli.StringFlag{Name: "script-config", Usage: "YAML or JSON file of settings the handlers read as the table config (re-read at every reload)", EnvVars: envVar("script-config")},
			&cli.BoolFlag{Name: "no-scripts", Usage: "serve the built-in Go echo instead of Lua handlers", EnvVars: envVar("no-scripts")},
			&cli.DurationFlag{Name: "script-timeout", Value: scripting.DefaultTimeout,
				Usage: "how long one handler call may run", EnvVars: envVar("script-timeout")},
			&cli.StringSliceFlag{Name: "route-timeout", Usage: "ROUTE=DURATION: how long one call of that route may run, in place of --script-timeout (repeatable; at most 10m)", EnvVars: envVar("route-timeout")},
			&cli.StringSliceFlag{Name: "route-concurrency", Usage: "ROUTE=N: up to N messages of one connection on that route are handled at once, each answered with its id as it finishes (repeatable; 1 to 256; other routes handle a connection's messages one at a time, in order)", EnvVars: envVar("route-concurrency")},
			&cli.StringFlag{Name: "lua-memory-limit", Value: "1GiB", Usage: "Go heap size past which running handler calls are stopped", EnvVars: envVar("lua-memory-limit")},
			&cli.StringFlag{Name: "conn-state-max-bytes", Value: "64KiB", Usage: "most one connection's conn.state may hold, as JSON; a handler that stores more gets handler_error", EnvVars: envVar("conn-state-max-bytes")},
			&cli.StringFlag{Name: "store-max-bytes", Value: "256MiB", Usage: "most the local store module may hold (keys, values and 64 bytes an entry); a write past it fails", EnvVars: envVar("store-max-bytes")},
			&cli.StringSliceFlag{Name: "upstream", Usage: "name=host:port: a samgw-protocol service for upstream.request (repeatable)", EnvVars: envVar("upstream")},
			&cli.StringSliceFlag{Name: "upstream-allow", Usage: "host, host:port (globs) or CIDR that http.request may reach (repeatable; default: none)", EnvVars: envVar("upstream-allow")},
			&cli.StringFlag{Name: "upstream-max-body", Value: "4MiB", Usage: "largest HTTP response body a handler may read", EnvVars: envVar("upstream-max-body")},
			&cli.BoolFlag{Name: "upstream-tls", Usage: "connect to the --upstream services with TLS", EnvVars: envVar("upstream-tls")},
			&cli.StringFlag{Name: "upstream-tls-ca", Usage: "CA of the --upstream services' certificates", EnvVars: envVar("upstream-tls-ca")},
			&cli.StringFlag{Name: "upstream-token", Usage: "token to authenticate to the --upstream services", EnvVars: envVar("upstream-token")},
			&cli.StringFlag{Name: "nats", Usage: "NATS server URL(s), comma-separated: join a cluster of nodes", EnvVars: envVar("nats")},
			&cli.StringFlag{Name: "node", Usage: "this node's name in the cluster (default: the host name)", EnvVars: envVar("node")},
			&cli.DurationFlag{Name: "presence-ttl", Value: cluster.DefaultPresenceTTL, Usage: "how long a node's presence outlives its last refresh (every third of it): a node that dies is noticed by the others within it; the same on every node", EnvVars: envVar("presence-ttl")},
			&cli.StringFlag{Name: "nats-token", Usage: "token for NATS", EnvVars: envVar("nats-token")},
			&cli.StringFlag{Name: "nats-creds", Usage: "NATS credentials file", EnvVars: envVar("nats-creds")},
			&cli.StringFlag{Name: "nats-ca", Usage: "CA of the NATS servers' TLS certificates", EnvVars: envVar("nats-ca")},
			&cli.StringSliceFlag{Name: "nats-subject-allow", Usage: "subject prefix Lua may publish and request on (repeatable)", EnvVars: envVar("nats-subject-allow")},
			&cli.StringFlag{Name: "data-dir", Value: "samgw-data", Usage: "where the embedded JetStream keeps the mailboxes (created if missing; one process at a time); with --nats the cluster's JetStream keeps them instead", EnvVars: envVar("data-dir")},
			&cli.BoolFlag{Name: "data-sync", Usage: "flush every mailbox write to disk before it is acked, so it also survives a power loss (a killed process loses nothing either way); embedded store only", EnvVars: envVar("data-sync")},
			&cli.BoolFlag{Name: "no-mailboxes", Usage: "turn durable delivery off: no store, gateway.deliver and the queue module fail, clients that ask to resume are told resume: false", EnvVars: envVar("no-mailboxes")},
			&cli.Int64Flag{Name: "mailbox-max-messages", Value: delivery.DefaultMaxMessages, Usage: "most messages one identity's mailbox holds; past it gateway.deliver fails (see --mailbox-discard)", EnvVars: envVar("mailbox-max-messages")},
			&cli.DurationFlag{Name: "mailbox-max-age", Value: delivery.DefaultMaxAge, Usage: "how long a message waits in a mailbox before it expires unread", EnvVars: envVar("mailbox-max-age")},
			&cli.StringFlag{Name: "mailbox-store-bytes", Value: "1GiB", Usage: "most all mailboxes hold together; past it gateway.deliver fails", EnvVars: envVar("mailbox-store-bytes")},
			&cli.StringFlag{Name: "mailbox-discard", Value: "new", Usage: `what a full mailbox does: "new" refuses the new message, "old" drops its oldest to take it`, EnvVars: envVar("mailbox-discard")},
			&cli.DurationFlag{Name: "mailbox-dedupe-window", Value: delivery.DefaultDedupeWindow, Usage: "how long a gateway.deliver id is remembered: the same id to the same identity within it is stored once", EnvVars: envVar("mailbox-dedupe-window")},
			&cli.IntFlag{Name: "mailbox-max-inflight", Value: delivery.DefaultMaxInFlight, Usage: "most mailbox messages one connection may have been sent and not acked; delivery to it waits past that", EnvVars: envVar("mailbox-max-inflight")},
			&cli.StringSliceFlag{Name: "topic-history", Usage: "PATTERN=N: keep the last N (at most 1000) publications of each topic PATTERN matches (* one word, > the rest; repeatable, the first match applies), so a subscriber can resume (gateway.subscribe with since)", EnvVars: envVar("topic-history")},
			&cli.StringFlag{Name: "topic-history-bytes", Value: "256MiB", Usage: "most one --topic-history rule keeps for all its topics; past it the oldest publications go", EnvVars: envVar("topic-history-bytes")},
			&cli.DurationFlag{Name: "queue-node-timeout", Value: delivery.DefaultNodeTimeout, Usage: "how long the jobs a node's workers hold stay with a node that stopped answering (killed, cut off from NATS) before they go to another", EnvVars: envVar("queue-node-timeout")},
			&cli.IntFlag{Name: "data-replicas", Value: 1, Usage: "how many servers of a JetStream cluster (--nats) keep each mailbox message, 1 to 5 (1 with the embedded store)", EnvVars: envVar("data-replicas")},
			&cli.StringFlag{Name: "http-listen", Usage: "serve WebSocket (GET /v1/ws) and HTTP calls of routes (POST /v1/routes/ROUTE) on this address, with the TCP listener's TLS certificate when it has one (off by default)", EnvVars: envVar("http-listen")},
			&cli.StringSliceFlag{Name: "ws-origins", Usage: "browser origins allowed to open a WebSocket (repeatable; patterns like https://*.example.com); a request without Origin is allowed, any other origin gets 403", EnvVars: envVar("ws-origins")},
			&cli.BoolFlag{Name: "ws-compression", Value: true, Usage: "negotiate permessage-deflate with WebSocket clients that offer it", EnvVars: envVar("ws-compression")},
			&cli.IntFlag{Name: "ws-compression-threshold", Value: 512, Usage: "WebSocket messages shorter than this many bytes go uncompressed", EnvVars: envVar("ws-compression-threshold")},
			&cli.DurationFlag{Name: "http-header-timeout", Value: 5 * time.Second, Usage: "an HTTP request's headers must arrive within this (a peer that drips them is cut off)", EnvVars: envVar("http-header-timeout")},
			&cli.DurationFlag{Name: "http-read-timeout", Value: 15 * time.Second, Usage: "an HTTP request, body included, must arrive within this (a WebSocket is then on its own keep-alive)", EnvVars: envVar("http-read-timeout")},
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus /metrics, /healthz, /readyz, /connz and the operator's status page (/status, /status.json) on this address (off by default)", EnvVars: envVar("metrics-listen")},
			&cli.BoolFlag{Name: "pprof", Usage: "also serve Go's profiler under /debug/pprof/ on --metrics-listen (off by default)", EnvVars: envVar("pprof")},
			&cli.IntFlag{Name: "lua-states", Value: scripting.DefaultMaxStates,
				Usage: "most Lua states per scripts version: how many handler calls can run at once", EnvVars: envVar("lua-states")},
			&cli.StringFlag{Name: "gc-min-heap", Value: strconv.Itoa(gctune.DefaultMinHeap>>20) + "MiB",
				Usage: "collect garbage no earlier than at this heap size, for every two Ps (GOMAXPROCS) and times the Ps per core (0: Go's default, collect when the live heap doubles); GOGC or GOMEMLIMIT in the environment turn it off", EnvVars: envVar("gc-min-heap")},
			&cli.IntFlag{Name: "lua-max-timers", Value: scripting.DefaultMaxTimers,
				Usage: "most pending timers (timer.after, timer.every) of the scripts", EnvVars: envVar("lua-max-timers")},
			&cli.IntFlag{Name: "lua-max-timers-per-conn", Value: scripting.DefaultMaxTimersPerConn,
				Usage: "most pending timers made by the calls of one connection", EnvVars: envVar("lua-max-timers-per-conn")},
		}, append(serveSecurityFlags(), append(logFlags(), configFlag())...)...),
		Before: loadConfigFile,
		Action: serve,
	}
}

func serve(cctx *cli.Context) error {
	log, err := newLogger(cctx, cctx.App.ErrWriter)
	if err != nil {
		return err
	}
	cfg, err := serverConfig(cctx, log)
	if err != nil {
		return err
	}
	audit, idFile, err := serveSecurity(cctx, &cfg)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return flagError(err)
	}
	if audit != nil {
		defer audit.Close()
	}
	stopTuning, err := tuneGC(cctx, log)
	if err != nil {
		return err
	}
	defer stopTuning()
	var reg *metrics.Metrics
	if cctx.String("metrics-listen") != "" {
		reg = metrics.New()
		if cctx.Bool("pprof") {
			reg.EnablePprof()
		}
	} else if cctx.Bool("pprof") {
		return errors.New("--pprof is served on --metrics-listen: set that too")
	}
	clu, err := joinCluster(cctx, log)
	if err != nil {
		return err
	}
	// Connection ids never repeat: each start of the process names its
	// connections with a boot id of its own (after the node's name in a
	// cluster), so state a script keyed by a connection id (in the store,
	// which outlives a restart) never points at an unrelated connection.
	boot, err := bootID()
	if err != nil {
		return err
	}
	cfg.IDPrefix = boot + "."
	if clu != nil {
		defer clu.Close()
		cfg.IDPrefix = clu.IDPrefix() + boot + "."
		if cfg.Auth != nil {
			cfg.Auth.Replay = clu // a signed frame is accepted once by the cluster
		}
	}
	// The stores are opened before the server and the engine they serve:
	// what they ask of them goes through these, set once those exist.
	var served atomic.Pointer[gateway.Server]
	var scripts atomic.Pointer[scripting.Engine]
	stores, closeBoxes, err := openMailboxes(cctx, log, clu, storeHooks{auth: cfg.Auth != nil, served: &served, scripts: &scripts, metrics: reg})
	if err != nil {
		return err
	}
	defer closeBoxes()
	boxes, queues := stores.boxes, stores.queues
	if boxes != nil {
		cfg.Mailboxes = boxes
	}
	if queues != nil {
		cfg.Jobs = queues
	}
	engine, err := newEngine(cctx, log, cfg.Audit, reg, clu, stores)
	if err != nil {
		return err
	}
	if engine != nil {
		defer engine.Close()
		cfg.Handler = engine
		scripts.Store(engine)
	}
	srv, err := gateway.NewServer(cfg)
	if err != nil {
		return err
	}
	served.Store(srv)
	if clu != nil && engine != nil {
		clu.OnNodeDown(engine.NodeDown)
	}
	if err := attach(srv, engine, reg, clu); err != nil {
		return err
	}
	if reg != nil && boxes != nil {
		reg.AddCheck("mailboxes", boxes.Healthy)
	}
	if reg != nil {
		src := metrics.StatusSources{Version: versionString(), Started: time.Now()}
		if engine != nil {
			src.Subscriptions = engine.SubscriptionCount
		}
		if clu != nil {
			src.Nodes = clu.Nodes
		}
		reg.SetStatus(src)
	}
	if reg != nil && queues != nil {
		reg.AttachQueues(queues)
	}

	// Reloads (on file changes and SIGHUP) and metrics run beside the server.
	bg := newBackground(cctx.Context)
	defer bg.stop()
	var ids *identitiesReloader
	if idFile != nil {
		ids = &identitiesReloader{file: cctx.String("identities"), srv: srv, log: log, digest: idFile.Digest}
		log.Info("Identities loaded", "file", ids.file, "sha256", idFile.Digest[:12], "identities", len(idFile.Identities), "roles", len(idFile.Roles),
			"roles_on", idFile.Roles != nil)
	}
	bg.reload(engine, cctx.String("scripts") != "", ids, log)
	if reg != nil {
		if err := bg.serveMetrics(reg, cctx.String("metrics-listen"), log); err != nil {
			return err
		}
	}
	if cctx.String("http-listen") != "" {
		if err := bg.serveHTTP(cctx, srv, cfg.TLSConfig, log); err != nil {
			return err
		}
	}
	start := time.Now()
	err = srv.ListenAndServe(cctx.Context)
	bg.stop()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("Server stopped", "uptime", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// serverConfig reads the network and keep-alive flags.
func serverConfig(cctx *cli.Context, log *slog.Logger) (gateway.Config, error) {
	maxFrame, err := parseSize(cctx.String("max-frame"))
	if err != nil {
		return gateway.Config{}, fmt.Errorf("--max-frame: %w", err)
	}
	for _, name := range []string{"keepalive-timeout", "keepalive-interval", "shutdown-timeout"} {
		if d := cctx.Duration(name); d <= 0 {
			return gateway.Config{}, fmt.Errorf("--%s must be positive, got %v", name, d)
		}
	}
	if cctx.Int("max-conns") <= 0 {
		return gateway.Config{}, fmt.Errorf("--max-conns must be positive, got %d", cctx.Int("max-conns"))
	}
	maxPending, err := positiveSize(cctx, "max-pending-bytes")
	if err != nil {
		return gateway.Config{}, err
	}
	if cctx.Duration("keepalive-interval") >= cctx.Duration("keepalive-timeout") {
		log.Warn("The keep-alive interval is not shorter than the timeout: idle clients that only answer keepalives may be dropped")
	}
	return gateway.Config{
		Addr:              cctx.String("listen"),
		KeepAliveTimeout:  cctx.Duration("keepalive-timeout"),
		KeepAliveInterval: cctx.Duration("keepalive-interval"),
		MaxFrameSize:      maxFrame,
		MaxConns:          cctx.Int("max-conns"),
		MaxPendingBytes:   int64(maxPending),
		ShutdownTimeout:   cctx.Duration("shutdown-timeout"),
		OneFramePerWrite:  cctx.Bool("one-frame-per-write"),
		Handler:           gateway.Echo,
		Logger:            log,
	}, nil
}

// attach connects the server to the metrics and the cluster, when on.
func attach(srv *gateway.Server, engine *scripting.Engine, reg *metrics.Metrics, clu *cluster.Cluster) error {
	if reg != nil {
		var scripts metrics.Scripts // stays nil with --no-scripts: no nil *Engine in an interface
		if engine != nil {
			scripts = engine
		}
		reg.Attach(srv, scripts)
	}
	if clu != nil {
		if err := clu.Start(srv); err != nil {
			return err
		}
		if reg != nil {
			reg.AddCheck("cluster", clu.Healthy)
		}
	}
	return nil
}

// background owns the goroutines that run beside the server: stop cancels
// them and waits for every one.
type background struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newBackground(parent context.Context) *background {
	ctx, cancel := context.WithCancel(parent)
	return &background{ctx: ctx, cancel: cancel}
}

func (b *background) run(f func(ctx context.Context)) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f(b.ctx)
	}()
}

func (b *background) stop() {
	b.cancel()
	b.wg.Wait()
}

// reload reloads the engine and the identities (either may be nil) on
// SIGHUP and when their files change (for the scripts, when they are a
// directory).
func (b *background) reload(engine *scripting.Engine, watch bool, ids *identitiesReloader, log *slog.Logger) {
	if engine == nil && ids == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	b.run(func(ctx context.Context) {
		defer signal.Stop(hup)
		reloadOnSignal(ctx, hup, engine, ids)
	})
	if ids != nil {
		b.run(func(ctx context.Context) {
			if err := ids.watch(ctx); err != nil {
				log.Error("Not watching the identities file; reload it with SIGHUP", "error", err)
			}
		})
	}
	if engine != nil && watch {
		b.run(func(ctx context.Context) {
			if err := engine.Watch(ctx, 0); err != nil {
				log.Error("Not watching the scripts; reload with SIGHUP", "error", err)
			}
		})
	}
}

// serveMetrics serves the metrics listener and waits until it listens (or
// failed to).
func (b *background) serveMetrics(reg *metrics.Metrics, addr string, log *slog.Logger) error {
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	b.run(func(ctx context.Context) { errc <- reg.Serve(ctx, addr, ready) })
	select {
	case addr := <-ready:
		log.Info("Metrics listening", "addr", addr, "paths", "/metrics /healthz /readyz")
		return nil
	case err := <-errc:
		return err
	}
}

// serveSecurity applies the TLS, authentication, audit and limit flags to
// cfg. It returns the audit log to close at exit and the identities file
// loaded, if any.
func serveSecurity(cctx *cli.Context, cfg *gateway.Config) (audit *gateway.AuditLog, ids *identitiesFile, err error) {
	log := cfg.Logger
	certFile, keyFile, clientCA := cctx.String("tls-cert"), cctx.String("tls-key"), cctx.String("tls-client-ca")
	if (certFile == "") != (keyFile == "") {
		return nil, nil, errors.New("--tls-cert and --tls-key go together")
	}
	if clientCA != "" && certFile == "" {
		return nil, nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if certFile != "" {
		tlsCfg, err := gateway.NewServerTLSConfig(gateway.ServerTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCA})
		if err != nil {
			return nil, nil, err
		}
		cfg.TLSConfig = tlsCfg
		cfg.HandshakeTimeout = cctx.Duration("handshake-timeout")
	}
	if file := cctx.String("identities"); file != "" {
		if ids, err = loadIdentities(file); err != nil {
			return nil, nil, err
		}
		cfg.Auth = &gateway.AuthConfig{Identities: ids.Identities, Roles: ids.Roles, MaxSkew: cctx.Duration("max-skew"), ReplayCap: cctx.Int("replay-cap")}
		cfg.AuthTimeout = cctx.Duration("auth-timeout")
	}
	maxUnauthFrame, err := parseSize(cctx.String("max-frame-unauthenticated"))
	if err != nil {
		return nil, nil, fmt.Errorf("--max-frame-unauthenticated: %w", err)
	}
	cfg.MaxFrameUnauthenticated, cfg.MaxUnauthenticated = maxUnauthFrame, cctx.Int("max-unauthenticated")
	cfg.Rate, cfg.RateBurst, cfg.MaxConnsPerIP = cctx.Float64("rate"), cctx.Int("rate-burst"), cctx.Int("max-conns-per-ip")
	if host, _, err := net.SplitHostPort(cfg.Addr); err == nil && !isLoopback(host) {
		if cfg.TLSConfig == nil {
			log.Warn("Listening on a non-loopback address without TLS: traffic can be read and altered on the network", "addr", cfg.Addr)
		}
		if cfg.Auth == nil && clientCA == "" {
			log.Warn("Listening on a non-loopback address without --identities or --tls-client-ca: anyone who can connect is served", "addr", cfg.Addr)
		}
	}
	file := cctx.String("audit-log")
	if file == "" {
		return nil, ids, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil { // a new folder is private, like the log
		return nil, nil, fmt.Errorf("--audit-log: create its folder: %w", err)
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("--audit-log: %w", err)
	}
	audit = gateway.NewAuditLog(f, 0)
	cfg.Audit = audit
	return audit, ids, nil
}

// isLoopback reports whether a listen host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newEngine loads the Lua handlers the flags ask for: nil with --no-scripts.
func newEngine(cctx *cli.Context, log *slog.Logger, audit gateway.Auditor, reg *metrics.Metrics, clu *cluster.Cluster, stores durable) (*scripting.Engine, error) {
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
	memLimit, err := parseSize(cctx.String("lua-memory-limit"))
	if err != nil {
		return nil, fmt.Errorf("--lua-memory-limit: %w", err)
	}
	storeMax, err := positiveSize(cctx, "store-max-bytes")
	if err != nil {
		return nil, err
	}
	stateMax, err := positiveSize(cctx, "conn-state-max-bytes")
	if err != nil {
		return nil, err
	}
	routeTimeouts, err := routeTimeoutFlags(cctx.StringSlice("route-timeout"))
	if err != nil {
		return nil, err
	}
	routeConcurrency, err := routeConcurrencyFlags(cctx.StringSlice("route-concurrency"))
	if err != nil {
		return nil, err
	}
	cfg := scripting.Config{
		RouteTimeouts:     routeTimeouts,
		RouteConcurrency:  routeConcurrency,
		ConnStateMaxBytes: stateMax,
		MemoryLimit:       uint64(memLimit),
		StoreMaxBytes:     int64(storeMax),
		Dir:               cctx.String("scripts"),
		ConfigFile:        cctx.String("script-config"),
		Timeout:           cctx.Duration("script-timeout"),
		MaxStates:         cctx.Int("lua-states"),
		MaxTimers:         cctx.Int("lua-max-timers"),
		MaxTimersPerConn:  cctx.Int("lua-max-timers-per-conn"),
		Logger:            log,
		Audit:             audit,
	}
	if reg != nil {
		cfg.ObserveCall = reg.ObserveCall
		cfg.Metrics = reg.Scripts()
	} else {
		// Checked the same way, and not exposed: a script's metric names
		// fail or pass alike with and without --metrics-listen.
		cfg.Metrics = metrics.New().Scripts()
	}
	up, err := upstreamConfig(cctx, log)
	if err != nil {
		return nil, err
	}
	cfg.Upstream = up
	if clu != nil {
		cfg.Cluster, cfg.KV = clu, clu.Store()
	}
	if stores.boxes != nil {
		cfg.Mailboxes = stores.boxes
	}
	if stores.queues != nil {
		cfg.Queues = stores.queues
	}
	if stores.history != nil {
		cfg.History = stores.history
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

// joinCluster connects to NATS when --nats is given.
func joinCluster(cctx *cli.Context, log *slog.Logger) (*cluster.Cluster, error) {
	url := cctx.String("nats")
	if url == "" {
		return nil, nil
	}
	ttl := cctx.Duration("presence-ttl")
	if ttl < cluster.MinPresenceTTL || ttl > cluster.MaxPresenceTTL {
		return nil, fmt.Errorf("--presence-ttl %v: want %v to %v", ttl, cluster.MinPresenceTTL, cluster.MaxPresenceTTL)
	}
	node := cctx.String("node")
	if node == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--node: %w", err)
		}
		node = strings.NewReplacer(".", "-", " ", "-").Replace(host)
	}
	ctx, cancel := context.WithTimeout(cctx.Context, 10*time.Second)
	defer cancel()
	clu, err := cluster.Connect(ctx, cluster.Config{
		URLs: url, Node: node, Token: cctx.String("nats-token"), CredsFile: cctx.String("nats-creds"), CAFile: cctx.String("nats-ca"),
		SubjectAllow: cctx.StringSlice("nats-subject-allow"), ReplayWindow: 2 * cctx.Duration("max-skew"), PresenceTTL: ttl, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("Joined the cluster", "node", node, "nats", url)
	return clu, nil
}

// upstreamConfig reads the --upstream* flags.
func upstreamConfig(cctx *cli.Context, log *slog.Logger) (*scripting.UpstreamConfig, error) {
	maxBody, err := parseSize(cctx.String("upstream-max-body"))
	if err != nil {
		return nil, fmt.Errorf("--upstream-max-body: %w", err)
	}
	up := &scripting.UpstreamConfig{Allow: cctx.StringSlice("upstream-allow"), MaxBody: int64(maxBody), Named: map[string]gateway.ClientConfig{}}
	allow, err := scripting.ParseAllow(up.Allow)
	if err != nil {
		return nil, fmt.Errorf("--upstream-allow: %w", err)
	}
	if allow.AllowsAnyHost() {
		log.Warn("--upstream-allow has a pattern that matches every host: Lua scripts may call any public address (special-purpose ranges and this host's own addresses stay denied unless a CIDR names them)",
			"upstream_allow", up.Allow)
	}
	var tlsCfg *tls.Config
	if cctx.Bool("upstream-tls") || cctx.String("upstream-tls-ca") != "" {
		if tlsCfg, err = gateway.NewClientTLSConfig(gateway.ClientTLS{CAFile: cctx.String("upstream-tls-ca")}); err != nil {
			return nil, fmt.Errorf("--upstream-tls-ca: %w", err)
		}
	}
	for _, spec := range cctx.StringSlice("upstream") {
		name, addr, ok := strings.Cut(spec, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--upstream %q: want name=host:port", spec)
		}
		if _, dup := up.Named[name]; dup {
			return nil, fmt.Errorf("--upstream %q: the name is used twice", name)
		}
		up.Named[name] = gateway.ClientConfig{Addr: addr, TLS: tlsCfg, Token: cctx.String("upstream-token"), Logger: log.With("upstream", name)}
	}
	return up, nil
}

// reloadOnSignal reloads the scripts and the identities (either may be
// nil) on every signal (SIGHUP) until ctx ends.
func reloadOnSignal(ctx context.Context, signals <-chan os.Signal, engine *scripting.Engine, ids *identitiesReloader) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			if ids != nil {
				ids.reload(false) //nolint:errcheck // logged; the previous identities stay
			}
			if engine != nil {
				engine.Reload() //nolint:errcheck // logged; the old scripts keep serving
			}
		}
	}
}

// serveFlags names the flag behind each gateway.Config field that a
// ConfigError can name.
var serveFlags = map[string]string{
	"KeepAliveTimeout": "keepalive-timeout", "KeepAliveInterval": "keepalive-interval", "ShutdownTimeout": "shutdown-timeout",
	"HandshakeTimeout": "handshake-timeout", "AuthTimeout": "auth-timeout", "MaxFrameSize": "max-frame", "MaxConns": "max-conns",
	"MaxFrameUnauthenticated": "max-frame-unauthenticated", "MaxUnauthenticated": "max-unauthenticated",
	"MaxConnsPerIP": "max-conns-per-ip", "Rate": "rate", "RateBurst": "rate-burst", "Auth.ReplayCap": "replay-cap",
	"MaxPendingBytes": "max-pending-bytes",
}

// flagError words a gateway.ConfigError in terms of the flag the user set.
func flagError(err error) error {
	var ce *gateway.ConfigError
	if errors.As(err, &ce) {
		if flag, ok := serveFlags[ce.Field]; ok {
			return fmt.Errorf("--%s %s", flag, strings.ReplaceAll(ce.Problem, "MaxConns", "--max-conns"))
		}
	}
	return err
}

// tuneGC keeps the heap target at --gc-min-heap or more (see gctune),
// unless the environment tunes the collector itself.
func tuneGC(cctx *cli.Context, log *slog.Logger) (stop func(), err error) {
	var minHeap int
	if s := strings.TrimSpace(cctx.String("gc-min-heap")); s != "0" {
		if minHeap, err = parseSize(s); err != nil {
			return nil, fmt.Errorf("--gc-min-heap: %w", err)
		}
	}
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		if os.Getenv(env) != "" {
			if minHeap > 0 && cctx.IsSet("gc-min-heap") {
				log.Warn("--gc-min-heap is off: the environment sets " + env)
			}
			return func() {}, nil
		}
	}
	return gctune.Start(uint64(minHeap)), nil
}

// bootID is six random lowercase base32 characters (30 bits) naming this
// start of the process in its connection ids.
func bootID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))[:6], nil
}

// routeTimeoutFlags reads --route-timeout ROUTE=DURATION values.
func routeTimeoutFlags(values []string) (map[string]time.Duration, error) {
	m := make(map[string]time.Duration, len(values))
	for _, v := range values {
		route, text, ok := strings.Cut(v, "=")
		d, err := time.ParseDuration(text)
		if !ok || route == "" || err != nil {
			return nil, fmt.Errorf("--route-timeout %q: want ROUTE=DURATION, like tool_call=30s", v)
		}
		if _, dup := m[route]; dup {
			return nil, fmt.Errorf("--route-timeout: route %q is given twice", route)
		}
		m[route] = d
	}
	if err := scripting.CheckRouteTimeouts(m); err != nil {
		return nil, fmt.Errorf("--route-timeout: %w", err)
	}
	return m, nil
}

// routeConcurrencyFlags reads --route-concurrency ROUTE=N values.
func routeConcurrencyFlags(values []string) (map[string]int, error) {
	m := make(map[string]int, len(values))
	for _, v := range values {
		route, text, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(text)
		if !ok || route == "" || err != nil {
			return nil, fmt.Errorf("--route-concurrency %q: want ROUTE=N, like submit=16", v)
		}
		if _, dup := m[route]; dup {
			return nil, fmt.Errorf("--route-concurrency: route %q is given twice", route)
		}
		m[route] = n
	}
	if err := scripting.CheckRouteConcurrency(m); err != nil {
		return nil, fmt.Errorf("--route-concurrency: %w", err)
	}
	return m, nil
}

// positiveSize reads size flag name, which must be above zero.
func positiveSize(cctx *cli.Context, name string) (int, error) {
	n, err := parseSize(cctx.String(name))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("--%s: must be a positive size like 64KiB, got %q", name, cctx.String(name))
	}
	return n, nil
}
