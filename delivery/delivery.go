// Package delivery holds the messages of agents until they take them:
// a durable mailbox per identity, with acks and resume, on JetStream.
//
// It maps mailboxes onto one JetStream stream (one subject per identity)
// and does not keep a log, a queue or acks of its own: JetStream stores
// each message and numbers it (its stream sequence is the mailbox's seq),
// enforces the limits (messages per mailbox, age, the store's bytes),
// drops duplicate ids, and an ack purges the identity's subject up to the
// acked seq. Delivery to a connection reads the subject with an ordered
// consumer from its first message, so what was not acked when a
// connection went away is delivered again when one comes back (at least
// once). It knows identities and sequence numbers, not sockets: the
// gateway attaches a connection (gateway.Mailboxes) and tells it acks.
package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors of Deliver, to test with errors.Is.
var (
	// ErrUnknownIdentity: no such identity (when the gateway lists them).
	ErrUnknownIdentity = errors.New("delivery: no such identity")
	// ErrMailboxFull: the identity's mailbox holds its most messages.
	ErrMailboxFull = errors.New("delivery: mailbox full")
	// ErrStoreFull: the mailboxes together hold their most bytes.
	ErrStoreFull = errors.New("delivery: mailbox store full")
	// ErrUnavailable: JetStream cannot be reached (or did not answer in
	// time); nothing is known to be stored.
	ErrUnavailable = errors.New("delivery: store unavailable")
	// ErrInvalid: the message or its options are not acceptable (too
	// large, a bad ttl).
	ErrInvalid = errors.New("delivery: invalid message")
)

// Defaults of Config.
const (
	DefaultStream       = "SAMGW_MAILBOXES"
	DefaultMaxMessages  = 10_000
	DefaultMaxAge       = 7 * 24 * time.Hour
	DefaultMaxBytes     = 1 << 30
	DefaultDedupeWindow = 2 * time.Minute
	DefaultMaxInFlight  = 256
	DefaultAckFlush     = 50 * time.Millisecond
	// subjectPrefix opens every mailbox's subject.
	subjectPrefix = "samgw.mailbox."
)

// Config configures Mailboxes. Zero values mean the defaults.
type Config struct {
	// Conn reaches JetStream: an in-process connection to the embedded
	// server (see Embedded), or a cluster's. Required.
	Conn *nats.Conn
	// Stream names the JetStream stream of the mailboxes.
	Stream string
	// Replicas is how many servers of a JetStream cluster keep each
	// message (1 with the embedded server).
	Replicas int
	// MaxMessages is the most messages one mailbox holds; a Deliver past it
	// fails with ErrMailboxFull (or drops the oldest, with DiscardOld).
	MaxMessages int64
	// MaxAge is how long a message waits before it expires unread.
	MaxAge time.Duration
	// MaxBytes is the most all mailboxes hold together; a Deliver past it
	// fails with ErrStoreFull.
	MaxBytes int64
	// MaxMessageBytes is the largest payload one message may have (0: the
	// server's limit).
	MaxMessageBytes int32
	// DiscardOld makes a full mailbox drop its oldest message to take a
	// new one, instead of refusing the new one.
	DiscardOld bool
	// DedupeWindow is how long a message id is remembered: a Deliver with
	// the same id (to the same identity) within it stores nothing and
	// returns the first one's seq.
	DedupeWindow time.Duration
	// MaxInFlight is how many messages one connection may have been sent
	// and not acked; delivery to it waits past that.
	MaxInFlight int
	// AckFlush is how often acks are applied to the store: acks are
	// cumulative, so many become one purge.
	AckFlush time.Duration
	// Known reports whether an identity exists (nil: every non-empty name
	// does). Deliver to one that does not fails with ErrUnknownIdentity.
	Known func(identity string) bool
	// Timeout bounds the store calls made for a connection (attaching it,
	// flushing acks).
	Timeout time.Duration
	Logger  *slog.Logger
}

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("delivery: invalid config")

// Validate reports every problem of cfg, in field order.
func (cfg Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if cfg.Conn == nil {
		bad("Conn is required")
	}
	if cfg.Replicas < 0 || cfg.Replicas > 5 {
		bad("Replicas %d: want 1 to 5", cfg.Replicas)
	}
	for _, f := range []struct {
		name     string
		negative bool
		value    any
	}{
		{"MaxMessages", cfg.MaxMessages < 0, cfg.MaxMessages},
		{"MaxAge", cfg.MaxAge < 0, cfg.MaxAge},
		{"MaxBytes", cfg.MaxBytes < 0, cfg.MaxBytes},
		{"MaxMessageBytes", cfg.MaxMessageBytes < 0, cfg.MaxMessageBytes},
		{"DedupeWindow", cfg.DedupeWindow < 0, cfg.DedupeWindow},
		{"MaxInFlight", cfg.MaxInFlight < 0, cfg.MaxInFlight},
		{"AckFlush", cfg.AckFlush < 0, cfg.AckFlush},
	} {
		if f.negative {
			bad("%s %v: want more than 0 (or 0 for the default)", f.name, f.value)
		}
	}
	return errors.Join(errs...)
}

func (cfg Config) withDefaults() Config {
	cfg.Stream = cmp.Or(cfg.Stream, DefaultStream)
	cfg.Replicas = cmp.Or(cfg.Replicas, 1)
	cfg.MaxMessages = cmp.Or(cfg.MaxMessages, DefaultMaxMessages)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, DefaultMaxBytes)
	cfg.DedupeWindow = cmp.Or(cfg.DedupeWindow, DefaultDedupeWindow)
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, DefaultMaxInFlight)
	cfg.AckFlush = cmp.Or(cfg.AckFlush, DefaultAckFlush)
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// Mailboxes is the durable mailbox of every identity. It implements
// gateway.Mailboxes. Its methods are safe for concurrent use.
type Mailboxes struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream

	mu    sync.Mutex
	boxes map[string]*box // the identities with a connection here or acks not yet applied

	flushNow chan struct{}
	stop     chan struct{}
	done     chan struct{}
	closed   bool
}

// New creates (or updates) the mailbox stream and starts applying acks.
func New(ctx context.Context, cfg Config) (*Mailboxes, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	discard := jetstream.DiscardNew
	if cfg.DiscardOld {
		discard = jetstream.DiscardOld
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:                 cfg.Stream,
		Description:          "samgw mailboxes: one subject per identity",
		Subjects:             []string{subjectPrefix + ">"},
		Storage:              jetstream.FileStorage,
		Replicas:             cfg.Replicas,
		Retention:            jetstream.LimitsPolicy,
		MaxMsgsPerSubject:    cfg.MaxMessages,
		MaxAge:               cfg.MaxAge,
		MaxBytes:             cfg.MaxBytes,
		MaxMsgSize:           cmp.Or(cfg.MaxMessageBytes, -1),
		Discard:              discard,
		DiscardNewPerSubject: !cfg.DiscardOld,
		Duplicates:           cfg.DedupeWindow,
		AllowMsgTTL:          true,
		AllowDirect:          true,
	})
	if err != nil {
		return nil, fmt.Errorf("delivery: create stream %s: %w", cfg.Stream, err)
	}
	m := &Mailboxes{cfg: cfg, js: js, stream: stream, boxes: map[string]*box{},
		flushNow: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go m.applyAcks()
	return m, nil
}

// Close applies the acks not yet applied and stops. Connections must be
// detached first (the gateway's Shutdown does).
func (m *Mailboxes) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	close(m.stop)
	<-m.done
}

// Healthy reports whether the store can be reached (for /readyz).
func (m *Mailboxes) Healthy() error {
	if !m.cfg.Conn.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, m.cfg.Conn.Status())
	}
	return nil
}
