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

// fieldChecks collects the first problem of a config's fields.
type fieldChecks struct{ err error }

func (f *fieldChecks) fail(field, problem string) {
	if f.err == nil {
		f.err = &ConfigError{Field: field, Problem: problem}
	}
}

func (f *fieldChecks) durations(fields map[string]time.Duration) {
	for name, d := range fields {
		if d < 0 {
			f.fail(name, "must not be negative, got "+d.String())
		}
	}
}

func (f *fieldChecks) sizes(fields map[string]int) {
	for name, n := range fields {
		if n < 0 {
			f.fail(name, "must not be negative")
		}
	}
}

// Validate reports the first field of c that makes no sense. Zero values
// are fine: they mean the defaults. NewServer calls it.
func (c Config) Validate() error {
	var f fieldChecks
	f.durations(map[string]time.Duration{"KeepAliveTimeout": c.KeepAliveTimeout, "KeepAliveInterval": c.KeepAliveInterval,
		"WriteTimeout": c.WriteTimeout, "LingerTimeout": c.LingerTimeout, "ShutdownTimeout": c.ShutdownTimeout,
		"HandshakeTimeout": c.HandshakeTimeout, "AuthTimeout": c.AuthTimeout})
	f.sizes(map[string]int{"MaxFrameSize": c.MaxFrameSize, "MaxDepth": c.MaxDepth, "MaxConns": c.MaxConns,
		"MaxQueueBytes": c.MaxQueueBytes, "MaxFrameUnauthenticated": c.MaxFrameUnauthenticated,
		"MaxUnauthenticated": c.MaxUnauthenticated, "MaxConnsPerIP": c.MaxConnsPerIP, "RateBurst": c.RateBurst})
	f.durations(map[string]time.Duration{"FramePacing": c.FramePacing})
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		f.fail("Rate", "must be a finite number of frames per second, not negative")
	}
	if c.MaxConns > 0 && c.MaxUnauthenticated > c.MaxConns {
		f.fail("MaxUnauthenticated", "must not exceed MaxConns")
	}
	if c.Auth != nil && c.Auth.ReplayCap < 0 {
		f.fail("Auth.ReplayCap", "must not be negative")
	}
	return f.err
}
