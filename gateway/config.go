package gateway

import (
	"cmp"
	"crypto/tls"
	"errors"
	"log/slog"
	"math"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Defaults for zero Config and ClientConfig fields.
const (
	DefaultAddr              = "127.0.0.1:4000"
	DefaultKeepAliveTimeout  = 30 * time.Second
	DefaultKeepAliveInterval = 10 * time.Second
	DefaultMaxConns          = 10000
	DefaultWriteTimeout      = 10 * time.Second
	DefaultLingerTimeout     = 2 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultAuthTimeout       = 5 * time.Second
	// DefaultMaxQueueBytes bounds a connection's outbound buffer; it is
	// raised to twice the frame limit when that is larger, so one maximal
	// reply always fits.
	DefaultMaxQueueBytes = 4 << 20
	// DefaultMaxPendingBytes bounds the outbound bytes of all connections
	// together: a quarter of the default memory limit of the Lua side.
	DefaultMaxPendingBytes = 256 << 20
	// DefaultMaxFrameUnauthenticated is the frame limit until a connection
	// has authenticated: an auth frame is small, and a peer that has proven
	// nothing should not make the server buffer a megabyte.
	DefaultMaxFrameUnauthenticated = 8 << 10
)

// Config configures a Server. The zero value of every field means its
// default, so Config{} serves the echo on DefaultAddr.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on.
	Addr string
	// KeepAliveTimeout closes a connection that sent no frame for this long.
	KeepAliveTimeout time.Duration
	// KeepAliveInterval is how often the server sends a keepalive frame.
	KeepAliveInterval time.Duration
	// MaxFrameSize and MaxDepth bound inbound frames.
	MaxFrameSize int
	MaxDepth     int
	// MaxConns is how many connections may be open at once; beyond it a new
	// connection is sent close {"reason":"server full"}.
	MaxConns int
	// MaxQueueBytes bounds the replies and pushes waiting to be written to
	// one connection; a peer that lets it overflow is a slow consumer.
	MaxQueueBytes int
	// MaxPendingBytes bounds what all connections together hold waiting
	// to be written (DefaultMaxPendingBytes when zero): past it, the
	// connections with the largest queues are closed as slow consumers
	// until the sum is back under it. Each connection's MaxQueueBytes
	// holds too; this bounds their sum, as NATS's and Redis's client
	// output limits do.
	MaxPendingBytes int64
	// WriteTimeout is how long one batched write may take before the peer is
	// closed as a slow consumer.
	WriteTimeout time.Duration
	// LingerTimeout is how long a closing connection waits for the peer to
	// read the last frames and hang up before it is closed outright.
	LingerTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown ListenAndServe performs
	// when its context ends.
	ShutdownTimeout time.Duration
	// TLSConfig, when set, makes the server speak TLS (see
	// NewServerTLSConfig).
	TLSConfig *tls.Config
	// HandshakeTimeout bounds the TLS handshake.
	HandshakeTimeout time.Duration
	// Auth, when set, requires every connection to authenticate.
	Auth *AuthConfig
	// AuthTimeout is how long a connection may take to authenticate.
	AuthTimeout time.Duration
	// MaxFrameUnauthenticated is the frame limit of a connection until it
	// has authenticated (with Auth set).
	MaxFrameUnauthenticated int
	// MaxUnauthenticated bounds the connections still in their TLS
	// handshake or authentication (with TLSConfig or Auth set); zero means
	// a quarter of MaxConns. When it is reached, or MaxConns is, the oldest
	// such connection is closed to admit a new one: peers that prove
	// nothing can hold at most this many slots and never lock out a client
	// that authenticates.
	MaxUnauthenticated int
	// Rate, when positive, limits each connection's data frames per second;
	// RateBurst frames may come at once (zero: the rate, at least 1).
	Rate      float64
	RateBurst int
	// MaxConnsPerIP, when positive, bounds the connections from one address.
	MaxConnsPerIP int
	// Audit receives security events; nil means none.
	Audit Auditor
	// OneFramePerWrite writes every frame in a write of its own, at least
	// FramePacing (DefaultFramePacing) after the previous one, and skips a
	// periodic keepalive that would fall due right after the answer to the
	// peer's own. It exists for peers that parse one JSON object per read
	// (the TypeScript prototype's agents), which any batching breaks. It
	// costs throughput; the default batches every pending frame into one
	// write.
	OneFramePerWrite bool
	FramePacing      time.Duration
	// IDPrefix is put before every connection id ("node-a." gives
	// "node-a.c1"), so ids stay unique across the nodes of a cluster.
	IDPrefix string
	// Handler serves data messages; nil means Echo.
	Handler Handler
	// Mailboxes holds the messages of identities that resume (an auth
	// frame with "resume": true); nil means no connection resumes.
	Mailboxes Mailboxes
	// Jobs hands out the work queues' jobs and takes the workers' answers
	// (ack, nack and progress frames naming a job); nil: no work queues.
	Jobs Jobs
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.KeepAliveTimeout = cmp.Or(c.KeepAliveTimeout, DefaultKeepAliveTimeout)
	c.KeepAliveInterval = cmp.Or(c.KeepAliveInterval, DefaultKeepAliveInterval)
	c.MaxFrameSize = cmp.Or(c.MaxFrameSize, protocol.DefaultMaxFrameSize)
	c.MaxDepth = cmp.Or(c.MaxDepth, protocol.DefaultMaxDepth)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.MaxQueueBytes = cmp.Or(c.MaxQueueBytes, DefaultMaxQueueBytes) // raised to fit two maximal frames by newWireConfig
	c.MaxPendingBytes = cmp.Or(c.MaxPendingBytes, DefaultMaxPendingBytes)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.LingerTimeout = cmp.Or(c.LingerTimeout, DefaultLingerTimeout)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.HandshakeTimeout = cmp.Or(c.HandshakeTimeout, DefaultHandshakeTimeout)
	c.AuthTimeout = cmp.Or(c.AuthTimeout, DefaultAuthTimeout)
	c.MaxFrameUnauthenticated = min(cmp.Or(c.MaxFrameUnauthenticated, DefaultMaxFrameUnauthenticated), c.MaxFrameSize)
	c.MaxUnauthenticated = cmp.Or(c.MaxUnauthenticated, max(c.MaxConns/4, 1))
	if c.Rate > 0 && c.RateBurst <= 0 {
		c.RateBurst = max(int(c.Rate), 1)
	}
	if c.Handler == nil {
		c.Handler = Echo
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ErrInvalidConfig is wrapped by the error of a Config or ClientConfig
// field that makes no sense (a negative duration or size, a NaN rate).
var ErrInvalidConfig = errors.New("gateway: invalid config")

// ConfigError names the field of a Config or ClientConfig that makes no
// sense and what is wrong with it.
type ConfigError struct {
	Field   string
	Problem string
}

func (e *ConfigError) Error() string { return "gateway: invalid config: " + e.Field + " " + e.Problem }

// Unwrap makes errors.Is(err, ErrInvalidConfig) hold.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// fieldChecks collects every problem of a config's fields, in the order
// they are checked (field order), so the same config always gives the
// same error.
type fieldChecks struct{ errs []error }

func (f *fieldChecks) fail(field, problem string) {
	f.errs = append(f.errs, &ConfigError{Field: field, Problem: problem})
}

// field is a name and a value, for checks that go in field order.
type field[T any] struct {
	name  string
	value T
}

func (f *fieldChecks) durations(fields ...field[time.Duration]) {
	for _, d := range fields {
		if d.value < 0 {
			f.fail(d.name, "must not be negative, got "+d.value.String())
		}
	}
}

func (f *fieldChecks) sizes(fields ...field[int]) {
	for _, n := range fields {
		if n.value < 0 {
			f.fail(n.name, "must not be negative")
		}
	}
}

// err is every problem found (errors.Join), or nil.
func (f *fieldChecks) err() error { return errors.Join(f.errs...) }

// Validate reports every field of c that makes no sense, in field order
// (errors.Join of *ConfigError). Zero values are fine: they mean the
// defaults. NewServer calls it.
func (c Config) Validate() error {
	var f fieldChecks
	f.durations(field[time.Duration]{"KeepAliveTimeout", c.KeepAliveTimeout}, field[time.Duration]{"KeepAliveInterval", c.KeepAliveInterval})
	f.sizes(field[int]{"MaxFrameSize", c.MaxFrameSize}, field[int]{"MaxDepth", c.MaxDepth}, field[int]{"MaxConns", c.MaxConns},
		field[int]{"MaxQueueBytes", c.MaxQueueBytes})
	if c.MaxPendingBytes < 0 {
		f.fail("MaxPendingBytes", "must not be negative")
	}
	f.durations(field[time.Duration]{"WriteTimeout", c.WriteTimeout}, field[time.Duration]{"LingerTimeout", c.LingerTimeout},
		field[time.Duration]{"ShutdownTimeout", c.ShutdownTimeout}, field[time.Duration]{"HandshakeTimeout", c.HandshakeTimeout},
		field[time.Duration]{"AuthTimeout", c.AuthTimeout})
	f.sizes(field[int]{"MaxFrameUnauthenticated", c.MaxFrameUnauthenticated}, field[int]{"MaxUnauthenticated", c.MaxUnauthenticated})
	if c.MaxConns > 0 && c.MaxUnauthenticated > c.MaxConns {
		f.fail("MaxUnauthenticated", "must not exceed MaxConns")
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		f.fail("Rate", "must be a finite number of frames per second, not negative")
	}
	f.sizes(field[int]{"RateBurst", c.RateBurst}, field[int]{"MaxConnsPerIP", c.MaxConnsPerIP})
	f.durations(field[time.Duration]{"FramePacing", c.FramePacing})
	if c.Auth != nil && c.Auth.ReplayCap < 0 {
		f.fail("Auth.ReplayCap", "must not be negative")
	}
	return f.err()
}
