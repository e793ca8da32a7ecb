package gateway

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Client defaults, for zero ClientConfig fields.
const (
	DefaultQueueSize   = 1024
	DefaultDialTimeout = 5 * time.Second
	DefaultBackoffMin  = 100 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
)

// ClientConfig configures a Client. The zero value of every field means its
// default.
type ClientConfig struct {
	// Addr is the server's address; default DefaultAddr. Several,
	// comma-separated ("10.0.0.1:4000,10.0.0.2:4000"), are tried in turn:
	// a dial that fails moves on to the next, and a reconnection starts
	// with the one after the server it lost, so a client fails over to the
	// other nodes of a cluster.
	Addr string
	// KeepAliveInterval is how often the client sends a keepalive frame.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout declares the connection dead when nothing arrived
	// for this long; the client then reconnects.
	KeepAliveTimeout time.Duration
	// MaxFrameSize bounds inbound frames.
	MaxFrameSize int
	// QueueSize bounds the frames kept while disconnected; beyond it sends
	// fail with ErrQueueFull.
	QueueSize int
	// DialTimeout bounds each connection attempt.
	DialTimeout time.Duration
	// WriteTimeout bounds each batched write.
	WriteTimeout time.Duration
	// LingerTimeout bounds how long Disconnect waits for the server to
	// acknowledge the close.
	LingerTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts; it doubles from min to max, with jitter.
	BackoffMin, BackoffMax time.Duration
	// NoReconnect makes a lost connection final: the client closes instead
	// of reconnecting.
	NoReconnect bool
	// Dial opens connections; nil means a net.Dialer (with TLS when TLS is
	// set).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set, makes the client speak TLS (see NewClientTLSConfig).
	TLS *tls.Config
	// Token, when set, is sent in an auth frame first on every connection.
	Token string
	// Compress asks the server for stream compression
	// (protocol.CompressDeflate) in the auth frame, which is then sent on
	// every connection even without a Token. Worth it for large text
	// (LLM output, JSON tool results); the server must know the option (a
	// server of an earlier version cannot read what follows it).
	Compress bool
	// SignKey, when set, signs every data frame (see protocol.AppendSigned).
	SignKey ed25519.PrivateKey
	// ConnectRetry is how long Connect keeps retrying a first dial that is
	// refused (a server still starting), with a backoff from 50 ms; zero
	// means no retry.
	ConnectRetry time.Duration
	// OneFramePerWrite and FramePacing: as in Config, for servers that
	// parse one JSON object per read (the TypeScript prototype's).
	OneFramePerWrite bool
	FramePacing      time.Duration
	// OnMessage, if set, is called on the reader goroutine for every frame
	// received, replies included. The message is valid only during the call.
	// A message from the identity's mailbox has a Seq; one whose id was
	// handled within DedupeWindow is not passed on (it was delivered again
	// after a reconnect).
	OnMessage func(*protocol.Message)
	// NoResume leaves the identity's mailbox alone: by default a client
	// with a Token asks to resume (an auth frame with "resume": true), so
	// what waits in its mailbox is delivered after each connect.
	NoResume bool
	// ManualAck leaves acks to the caller (Ack); by default each mailbox
	// message is acked once OnMessage has returned (acks are cumulative and
	// batched: one for every 64 messages, or 10 ms after the first, and
	// before Disconnect's close).
	ManualAck bool
	// DedupeWindow is how many mailbox message ids are remembered to drop
	// duplicates; zero means DefaultDedupeWindow.
	DedupeWindow int
	// OnJob, if set, handles the jobs of the work queues this client is a
	// worker of (data frames with a job; OnMessage does not see them).
	// Each runs on a goroutine of its own, as many at once as the server
	// hands out (the worker's prefetch). Returning nil acks the job, an
	// error (or a panic) nacks it, and while it runs a progress frame every
	// JobProgressEvery keeps its lease. ctx ends when the connection that
	// received the job is lost: the server has given it back.
	OnJob func(ctx context.Context, job Job) error
	// JobProgressEvery: zero means DefaultJobProgressEvery.
	JobProgressEvery time.Duration
	// TopicRoute is the route Subscribe and Unsubscribe send to; default
	// DefaultTopicRoute.
	TopicRoute string
	// OnResubscribe, if set, is called on the reader goroutine with the
	// answer to each subscription the client renews after a reconnect (or
	// why it failed). An answer with "recovered": false means publications
	// were missed and are no longer kept: resync that topic another way.
	OnResubscribe func(topic string, reply *protocol.Message, err error)
	// OnConnect and OnDisconnect, if set, are called when a connection is
	// made (the first and every reconnection) and when one is lost.
	OnConnect    func()
	OnDisconnect func(reason string)
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
}

func (c ClientConfig) withDefaults() ClientConfig {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.KeepAliveInterval = cmp.Or(c.KeepAliveInterval, DefaultKeepAliveInterval)
	c.KeepAliveTimeout = cmp.Or(c.KeepAliveTimeout, DefaultKeepAliveTimeout)
	c.MaxFrameSize = cmp.Or(c.MaxFrameSize, protocol.DefaultMaxFrameSize)
	c.QueueSize = cmp.Or(c.QueueSize, DefaultQueueSize)
	c.DialTimeout = cmp.Or(c.DialTimeout, DefaultDialTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.LingerTimeout = cmp.Or(c.LingerTimeout, DefaultLingerTimeout)
	c.DedupeWindow = cmp.Or(c.DedupeWindow, DefaultDedupeWindow)
	c.TopicRoute = cmp.Or(c.TopicRoute, DefaultTopicRoute)
	c.BackoffMin = cmp.Or(c.BackoffMin, DefaultBackoffMin)
	c.BackoffMax = max(cmp.Or(c.BackoffMax, DefaultBackoffMax), c.BackoffMin)
	if c.Dial == nil {
		if c.TLS != nil {
			d := &tls.Dialer{Config: c.TLS}
			c.Dial = d.DialContext
		} else {
			d := &net.Dialer{}
			c.Dial = d.DialContext
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Client is a connection to a samgw server that survives the server: it
// reconnects with backoff after any loss Disconnect did not ask for, and
// keeps what was sent meanwhile in a bounded queue, delivered in order once
// connected again.
//
// Delivery is at most once: a frame already written to a connection that
// then breaks is not sent again, and a Request waiting for its reply fails
// with ErrConnectionLost. Frames still queued when a connection breaks are
// sent on the next one.
//
// All methods are safe for concurrent use.
type Client struct {
	cfg      ClientConfig
	wcfg     wireConfig
	log      *slog.Logger
	idPrefix string
	addrs    []string // Addr's servers
	next     int      // the one to dial first; the dialing goroutine only
	seq      atomic.Uint64

	mu        sync.Mutex
	cur       *wire    // the live connection; nil while disconnected
	queue     [][]byte // frames waiting for a connection, oldest first
	waiters   map[string]chan *protocol.Message
	started   bool
	closed    bool
	lost      string // why the last connection ended, for the requests it fails
	lastError error  // the last error frame that answered no request (what the server said before hanging up)
	quit      bool   // Disconnect was called (closed may also come from a loss)

	inbox        *inbox         // the mailbox's side of the client
	topics       followed       // the topics it subscribed to with Subscribe
	jobs         sync.WaitGroup // OnJob calls running
	authResult   chan error     // the answer to the auth frame of the first connection
	lastActivity atomic.Int64   // Unix nanoseconds
	stop         chan struct{}  // closed by Disconnect
	done         chan struct{}  // closed when the connection loop ends
}

// Validate reports every field of c that makes no sense, in field order
// (errors.Join of *ConfigError). Zero values are fine: they mean the
// defaults. NewClient calls it.
func (c ClientConfig) Validate() error {
	var f fieldChecks
	f.durations(field[time.Duration]{"KeepAliveInterval", c.KeepAliveInterval}, field[time.Duration]{"KeepAliveTimeout", c.KeepAliveTimeout})
	f.sizes(field[int]{"MaxFrameSize", c.MaxFrameSize}, field[int]{"QueueSize", c.QueueSize}, field[int]{"DedupeWindow", c.DedupeWindow})
	f.durations(field[time.Duration]{"DialTimeout", c.DialTimeout}, field[time.Duration]{"WriteTimeout", c.WriteTimeout},
		field[time.Duration]{"LingerTimeout", c.LingerTimeout}, field[time.Duration]{"BackoffMin", c.BackoffMin},
		field[time.Duration]{"BackoffMax", c.BackoffMax})
	if c.BackoffMin > 0 && c.BackoffMax > 0 && c.BackoffMin > c.BackoffMax {
		f.fail("BackoffMin", "must not exceed BackoffMax")
	}
	if c.Addr != "" && slices.Contains(splitAddrs(c.Addr), "") {
		f.fail("Addr", "has an empty entry in its comma-separated list")
	}
	if c.SignKey != nil && len(c.SignKey) != ed25519.PrivateKeySize {
		f.fail("SignKey", "is not an Ed25519 private key")
	}
	f.durations(field[time.Duration]{"ConnectRetry", c.ConnectRetry}, field[time.Duration]{"FramePacing", c.FramePacing})
	return f.err()
}

// NewClient returns an unconnected Client for cfg, or the error of a field
// that makes no sense (see ClientConfig.Validate).
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var b [4]byte
	crand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never fails
	return &Client{
		cfg: cfg,
		wcfg: newWireConfig(protocol.Limits{MaxFrameSize: cfg.MaxFrameSize}, cfg.KeepAliveInterval, cfg.KeepAliveTimeout,
			cfg.WriteTimeout, cfg.LingerTimeout, 0, false).oneFramePerWrite(cfg.OneFramePerWrite, cfg.FramePacing),
		log:        cfg.Logger.With("server", cfg.Addr),
		idPrefix:   hex.EncodeToString(b[:]) + "-",
		addrs:      splitAddrs(cfg.Addr),
		waiters:    make(map[string]chan *protocol.Message),
		inbox:      newInbox(cfg.DedupeWindow),
		topics:     followed{topics: map[string]*position{}, renewing: map[string]string{}},
		authResult: make(chan error, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}, nil
}

// Connect dials the server and starts the connection loop. It fails when
// the first connection cannot be made; later losses are repaired in the
// background.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	if c.started || c.closed {
		c.mu.Unlock()
		return fmt.Errorf("connect: %w", ErrClientClosed)
	}
	c.started = true
	c.mu.Unlock()
	nc, err := c.dialFirst(ctx)
	if err != nil {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.done)
		return err
	}
	w := c.startSession(nc)
	go c.run(w)
	if c.cfg.Token == "" && !c.cfg.Compress {
		return nil
	}
	// Wait for the server to accept the token (and the compression), so a
	// wrong one fails here.
	timer := time.NewTimer(c.cfg.DialTimeout)
	defer timer.Stop()
	select {
	case err = <-c.authResult:
	case <-timer.C:
		err = errors.New("no answer to the auth frame")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.Disconnect("authentication failed")
		return fmt.Errorf("authenticate to %s: %w", c.cfg.Addr, err)
	}
	return nil
}

// dialFirst dials, retrying a refused connection for ConnectRetry.
func (c *Client) dialFirst(ctx context.Context) (net.Conn, error) {
	deadline := time.Now().Add(c.cfg.ConnectRetry)
	backoff := 50 * time.Millisecond
	for {
		nc, err := c.dial(ctx)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().Add(backoff).After(deadline) {
			return nc, err
		}
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// dial connects to the first of the servers, from c.next on, that
// answers; the next dial starts after it.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var errs []error
	for i := range c.addrs {
		k := (c.next + i) % len(c.addrs)
		nc, err := c.dialOne(ctx, c.addrs[k])
		if err == nil {
			c.next = k + 1
			return nc, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (c *Client) dialOne(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	nc, err := c.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return nc, nil
}

// splitAddrs returns the servers of a comma-separated Addr.
func splitAddrs(addr string) []string {
	var out []string
	for _, a := range strings.Split(addr, ",") {
		out = append(out, strings.TrimSpace(a))
	}
	return out
}

// run is the connection loop: it serves a connection until it ends, then
// reconnects with backoff unless the client is closing.
func (c *Client) run(w *wire) {
	defer close(c.done)
	backoff := c.cfg.BackoffMin
	for {
		reason := c.serveSession(w)
		if c.isClosed() {
			return
		}
		c.log.Warn("Connection lost", "reason", reason)
		if c.cfg.OnDisconnect != nil {
			c.cfg.OnDisconnect(reason)
		}
		if c.cfg.NoReconnect {
			c.close()
			return
		}
		for {
			// Equal jitter: wait between half and all of the backoff, so
			// clients dropped together do not return together.
			delay := backoff/2 + rand.N(backoff/2+1)
			timer := time.NewTimer(delay)
			select {
			case <-c.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
			backoff = min(2*backoff, c.cfg.BackoffMax)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			nc, err := c.dial(ctx)
			cancel()
			if err == nil {
				w = c.startSession(nc)
				backoff = c.cfg.BackoffMin
				c.log.Info("Reconnected")
				break
			}
			if c.isClosed() {
				return
			}
			c.log.Debug("Reconnect failed", "error", err, "next_backoff", backoff)
		}
	}
}

// startSession makes nc the live connection and hands it the queued frames.
func (c *Client) startSession(nc net.Conn) *wire {
	w := newWire(nc, &c.wcfg)
	switch {
	case c.cfg.Token != "":
		var buf [512]byte
		payload := protocol.AppendAuthPayload(buf[:0], c.cfg.Token)
		if !c.cfg.NoResume {
			payload = protocol.AppendResumeAuthPayload(buf[:0], c.cfg.Token)
		}
		c.sendAuth(w, payload)
	case c.cfg.Compress:
		c.sendAuth(w, nil)
	}
	c.mu.Lock()
	c.renewSubscriptions(w)
	for _, frame := range c.queue {
		w.enqueue(protocol.TypeData, func(dst []byte) []byte { return append(dst, frame...) }) //nolint:errcheck // a new wire accepts
	}
	c.queue = nil
	c.cur = w
	c.mu.Unlock()
	c.lastActivity.Store(time.Now().UnixNano())
	go w.keepAliveLoop()
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect()
	}
	return w
}

// sendAuth queues the auth frame with payload, asking for compression
// when configured: what is queued after it is compressed.
func (c *Client) sendAuth(w *wire, payload []byte) {
	m := &protocol.Message{Type: protocol.TypeAuth, ID: c.nextID(), Payload: payload}
	if !c.cfg.Compress {
		w.enqueueMessage(m) //nolint:errcheck // a new wire accepts
		return
	}
	m.Payload = protocol.AppendCompressOption(payload, protocol.CompressDeflate)
	w.deflateOutput(m) //nolint:errcheck // a new wire accepts
}

// serveSession reads from w until the connection ends and returns why.
func (c *Client) serveSession(w *wire) string {
	var msg protocol.Message
	var cause CloseCause
	session, endSession := context.WithCancel(context.Background()) // the jobs it received
	defer endSession()
	for cause.Kind == 0 {
		frame, err := w.readFrame()
		if err != nil {
			cause = readCause(err, w.requestedCause())
			break
		}
		c.lastActivity.Store(time.Now().UnixNano())
		cause = c.dispatch(session, w, frame, &msg)
	}
	reason := cause.String()
	// Frames not yet written go back to the front of the queue for the next
	// connection; requests whose frames were written may never be answered.
	c.mu.Lock()
	c.cur = nil
	c.lost = reason
	if !c.closed {
		c.queue = append(splitFrames(w.takePending()), c.queue...)
	}
	queued := make(map[string]bool)
	for _, f := range c.queue {
		var m protocol.Message
		if protocol.Decode(f[:len(f)-1], &m, protocol.Limits{}) == nil && m.ID != "" {
			queued[m.ID] = true
		}
	}
	for id, ch := range c.waiters {
		if !queued[id] {
			delete(c.waiters, id)
			close(ch)
		}
	}
	c.mu.Unlock()
	authErr := errors.New("the connection ended before authentication: " + reason)
	c.mu.Lock()
	if c.lastError != nil { // what the server said before it hung up
		authErr = fmt.Errorf("%w: %w", authErr, c.lastError)
	}
	c.mu.Unlock()
	c.reportAuth(authErr) // unless answered already
	w.finish(cause)
	return reason
}

// dispatch handles one received frame; it returns a cause when the server
// closed the connection.
func (c *Client) dispatch(session context.Context, w *wire, frame []byte, m *protocol.Message) CloseCause {
	if err := protocol.Decode(frame, m, c.wcfg.limits); err != nil {
		c.log.Debug("Invalid frame from server", "error", err)
		return CloseCause{}
	}
	if m.Type == protocol.TypeData && m.Seq != 0 {
		c.mailboxMessage(w, m) // never a reply, whatever its id
		return CloseCause{}
	}
	if m.Type == protocol.TypeData && m.Job != "" && c.cfg.OnJob != nil {
		c.startJob(session, w, m) // never a reply either
		return CloseCause{}
	}
	if m.Type == protocol.TypeData && m.Offset != 0 && m.Topic != "" && c.topics.seen(m) {
		return CloseCause{} // had it: delivered again by a recovery
	}
	if (m.Type == protocol.TypeData || m.Type == protocol.TypeError) && c.renewed(m) {
		return CloseCause{}
	}
	if c.cfg.OnMessage != nil {
		c.cfg.OnMessage(m)
	}
	switch m.Type {
	case protocol.TypePing:
		w.enqueueMessage(&protocol.Message{Type: protocol.TypePong, ID: m.ID, Payload: pongPayload}) //nolint:errcheck // closing
	case protocol.TypeClose:
		return CloseCause{Kind: CloseByServer, Detail: cmp.Or(protocol.ParseClose(m.Payload), "no reason given")}
	case protocol.TypeAuth:
		if c.cfg.Compress && w.inflate == nil {
			if protocol.ParseCompress(m.Payload) != protocol.CompressDeflate {
				return CloseCause{Kind: CloseBadCompression, Detail: "the server did not agree to compression"}
			}
			w.inflateInput() // the server's bytes after this frame are compressed
		}
		c.authAnswered(m)
		c.reportAuth(nil)
	case protocol.TypeData, protocol.TypePong, protocol.TypeError:
		if m.Type == protocol.TypeError && errors.Is(errorFromFrame(m), &protocol.Error{Code: protocol.CodeUnauthorized}) {
			c.reportAuth(errorFromFrame(m))
		}
		if m.ID == "" {
			if m.Type == protocol.TypeError {
				err := errorFromFrame(m)
				c.log.Warn("Error from server", "error", err)
				c.mu.Lock()
				c.lastError = err
				c.mu.Unlock()
			}
			break
		}
		c.mu.Lock()
		ch, ok := c.waiters[m.ID]
		delete(c.waiters, m.ID)
		c.mu.Unlock()
		if ok {
			ch <- m.Clone()
		}
	}
	return CloseCause{}
}

// reportAuth passes the answer to an auth frame to a waiting Connect.
func (c *Client) reportAuth(err error) {
	select {
	case c.authResult <- err:
	default:
	}
}

// splitFrames splits a buffer of whole frames into one slice per frame,
// each ending in "\n".
func splitFrames(buf []byte) [][]byte {
	var frames [][]byte
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, '\n')
		frames = append(frames, buf[:i+1])
		buf = buf[i+1:]
	}
	return frames
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// close marks the client closed, drops the queue and fails every waiting
// request.
func (c *Client) close() {
	c.mu.Lock()
	c.closed = true
	c.queue = nil
	for id, ch := range c.waiters {
		delete(c.waiters, id)
		close(ch)
	}
	c.mu.Unlock()
}

// nextID returns an id unique to this client and, with high probability,
// among all clients.
func (c *Client) nextID() string {
	return c.idPrefix + strconv.FormatUint(c.seq.Add(1), 10)
}

// SendMessage sends m, giving it a fresh id when it has none, and returns
// the id. While disconnected the frame is queued.
func (c *Client) SendMessage(m protocol.Message) (string, error) {
	if m.ID == "" {
		m.ID = c.nextID()
	}
	return m.ID, c.send(&m, nil)
}

// send writes m to the live connection or queues it. When reply is not nil
// it is registered as the waiter for m's id first.
func (c *Client) send(m *protocol.Message, reply chan *protocol.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClientClosed
	}
	if reply != nil {
		c.waiters[m.ID] = reply
	}
	if c.cfg.SignKey != nil && m.Type == protocol.TypeData {
		c.sign(m)
	}
	if c.cur != nil && c.cur.enqueueMessage(m) == nil {
		return nil
	}
	if len(c.queue) >= c.cfg.QueueSize {
		delete(c.waiters, m.ID)
		return ErrQueueFull
	}
	c.queue = append(c.queue, protocol.AppendFrame(nil, m))
	return nil
}

// sign stamps m with the current time and its Ed25519 signature.
func (c *Client) sign(m *protocol.Message) {
	if m.Timestamp == 0 {
		m.Timestamp = protocol.Now()
	}
	protocol.Sign(c.cfg.SignKey, m)
}

// Send sends a data message with payload and returns its id. payload is
// encoded with encoding/json; a json.RawMessage is sent as it is.
func (c *Client) Send(payload any) (string, error) {
	raw, err := encodePayload(payload)
	if err != nil {
		return "", err
	}
	return c.SendMessage(protocol.Message{Type: protocol.TypeData, Payload: raw})
}

// Ping sends a ping and returns its id; the server's pong carries it.
func (c *Client) Ping() (string, error) {
	return c.SendMessage(protocol.Message{Type: protocol.TypePing, Payload: []byte(`{"message":"ping"}`)})
}

// PingWait sends a ping and waits for its pong, returning the round trip.
func (c *Client) PingWait(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	_, err := c.RequestMessage(ctx, protocol.Message{Type: protocol.TypePing, Payload: []byte(`{"message":"ping"}`)})
	if err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Request sends a data message with payload and waits for the reply with
// the same id. An `error` frame in reply is returned as a *protocol.Error
// along with the frame.
func (c *Client) Request(ctx context.Context, payload any) (*protocol.Message, error) {
	raw, err := encodePayload(payload)
	if err != nil {
		return nil, err
	}
	return c.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Payload: raw})
}

// RequestMessage sends m (with a fresh id when it has none) and waits for
// the reply with the same id.
func (c *Client) RequestMessage(ctx context.Context, m protocol.Message) (*protocol.Message, error) {
	if m.ID == "" {
		m.ID = c.nextID()
	}
	reply := make(chan *protocol.Message, 1)
	if err := c.send(&m, reply); err != nil {
		return nil, fmt.Errorf("request %s: %w", m.ID, err)
	}
	select {
	case r, ok := <-reply:
		if !ok {
			c.mu.Lock()
			quit, reason, said := c.quit, c.lost, c.lastError
			c.mu.Unlock()
			if quit {
				return nil, fmt.Errorf("request %s: %w", m.ID, ErrClientClosed)
			}
			if said != nil { // what the server said before it hung up (tls_required, unauthorized, …)
				return nil, fmt.Errorf("request %s: %w (%s): %w", m.ID, ErrConnectionLost, reason, said)
			}
			return nil, fmt.Errorf("request %s: %w (%s)", m.ID, ErrConnectionLost, reason)
		}
		if r.Type == protocol.TypeError {
			return r, errorFromFrame(r)
		}
		return r, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, m.ID)
		c.mu.Unlock()
		return nil, fmt.Errorf("request %s: %w", m.ID, ctx.Err())
	}
}

// errorFromFrame turns an `error` frame into a *protocol.Error.
func errorFromFrame(m *protocol.Message) error { return protocol.ParseError(m.Payload) }

func encodePayload(payload any) ([]byte, error) {
	switch p := payload.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(p) {
			return nil, fmt.Errorf("payload: %w", protocol.ErrInvalidJSON)
		}
		return p, nil
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return raw, nil
}

// Done returns a channel closed when the client has stopped for good: after
// Disconnect, a failed Connect, or a lost connection with NoReconnect.
func (c *Client) Done() <-chan struct{} { return c.doneIfStarted() }

// IsConnected reports whether a connection is up now.
func (c *Client) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// LastActivity returns when the last frame arrived from the server (or the
// connection was made).
func (c *Client) LastActivity() time.Time { return time.Unix(0, c.lastActivity.Load()) }

// Disconnect sends close {"reason": reason}, waits (up to the linger
// timeout) for the server to acknowledge, and stops the client for good.
// Queued frames are dropped and waiting requests fail with ErrClientClosed.
func (c *Client) Disconnect(reason string) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.doneIfStarted()
		return nil
	}
	c.closed = true
	c.quit = true
	started := c.started
	w := c.cur
	c.mu.Unlock()
	close(c.stop)
	c.flushAck() // what was handled is acked before the close
	c.stopAcks()
	if w != nil {
		var buf [128]byte
		payload := protocol.AppendReasonPayload(buf[:0], "reason", reason)
		if w.enqueueMessage(&protocol.Message{Type: protocol.TypeClose, Payload: payload}) == nil {
			timer := time.NewTimer(c.cfg.LingerTimeout)
			select {
			case <-c.done:
			case <-timer.C:
				w.abort(CloseCause{Kind: CloseTimedOut, Detail: "disconnect timed out"})
			}
			timer.Stop()
		} else {
			w.requestClose(CloseCause{Kind: CloseRequested, Detail: reason})
		}
	}
	if started {
		<-c.done
	}
	c.jobs.Wait() // their sessions ended: each returns once its handler does
	c.close()
	return nil
}

func (c *Client) doneIfStarted() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return c.done
}
