package gateway

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Server serves the samgw protocol. Create it with NewServer; it serves
// until Shutdown.
type Server struct {
	cfg  Config
	wcfg wireConfig
	log  *slog.Logger

	auth     *authority // nil: no authentication
	counters serverCounters

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[string]*Conn // every connection being served, in any state before closed
	open      map[string]*Conn // the addressable ones: in state open (see connState)
	perIP     map[string]int   // open connections by remote address
	pending   list.List        // connections not yet authenticated, oldest first (*Conn)
	evicting  int              // evicted connections still closing
	closed    bool

	connSeq    atomic.Uint64
	pushSeq    atomic.Uint64
	connWG     sync.WaitGroup // one per connection goroutine
	background sync.WaitGroup // the keep-alive scheduler: Shutdown waits for it
	done       chan struct{}  // closed by Shutdown

	keepAlives     *keepAliveScheduler // nil without a keep-alive interval
	keepAlivesOnce sync.Once
	parker         *parker // quiet plain-TCP connections without a goroutine; nil where unsupported
	baseCtx        context.Context
	stopBase       context.CancelFunc
	servingOnce    sync.Once
	servingCtx     context.Context // ends when Shutdown begins; see ServeHandler
	stopServing    context.CancelFunc
}

// NewServer returns a Server for cfg; zero fields take their defaults. It
// fails on a field that makes no sense (see Config.Validate) and on an
// invalid AuthConfig.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var auth *authority
	if cfg.Auth != nil {
		var err error
		if auth, err = newAuthority(cfg.Auth, cfg.Rate, cfg.RateBurst); err != nil {
			return nil, fmt.Errorf("identities: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	servingCtx, stopServing := context.WithCancel(context.Background())
	var keepAlives *keepAliveScheduler
	if cfg.KeepAliveInterval > 0 {
		keepAlives = newKeepAliveScheduler(cfg.KeepAliveInterval)
	}
	s := &Server{
		keepAlives: keepAlives,
		auth:       auth,
		cfg:        cfg,
		wcfg: newWireConfig(protocol.Limits{MaxFrameSize: cfg.MaxFrameSize, MaxDepth: cfg.MaxDepth}, cfg.KeepAliveInterval,
			cfg.KeepAliveTimeout, cfg.WriteTimeout, cfg.LingerTimeout, cfg.MaxQueueBytes, true).oneFramePerWrite(cfg.OneFramePerWrite, cfg.FramePacing),
		log:         cfg.Logger,
		listeners:   make(map[net.Listener]struct{}),
		conns:       make(map[string]*Conn),
		open:        make(map[string]*Conn),
		perIP:       make(map[string]int),
		done:        make(chan struct{}),
		baseCtx:     ctx,
		stopBase:    cancel,
		servingCtx:  servingCtx,
		stopServing: stopServing,
	}
	s.wcfg.budget = newPendingBudget(cfg.MaxPendingBytes, s.shedLargestQueues)
	return s, nil
}

// ListenAndServe listens on cfg.Addr and serves until ctx ends, then shuts
// down gracefully within cfg.ShutdownTimeout. It returns nil after a clean
// shutdown.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc: // Serve failed, or Shutdown was called directly
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := s.Shutdown(sctx)
	if serveErr == nil {
		serveErr = <-errc
	}
	if errors.Is(serveErr, ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, shutdownErr)
}

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed. Temporary accept errors (such as running out of file
// descriptors) are retried with a backoff from 5 ms to 1 s.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	if s.keepAlives != nil {
		s.keepAlivesOnce.Do(func() {
			// The parker lives from the first Serve to Shutdown; the
			// keep-alive scheduler, which decides who is quiet, feeds it.
			// Started only while not shut down, and counted under s.mu,
			// so Shutdown (which sets closed under it, then waits) either
			// waits for the scheduler or it never starts.
			s.mu.Lock()
			start := !s.closed
			if start {
				s.parker = newParker(s.cfg.KeepAliveTimeout)
				s.keepAlives.parker = s.parker
				s.background.Add(1)
			}
			parker := s.parker
			s.mu.Unlock()
			if parker != nil {
				go parker.run()
			}
			if start {
				go func() {
					defer s.background.Done()
					s.keepAlives.run(s.done)
				}()
			}
		})
	}
	if h, ok := s.cfg.Handler.(ServeHandler); ok {
		s.servingOnce.Do(func() { h.OnServe(s.servingCtx, s) })
	}
	s.log.Info("TCP server listening", "addr", ln.Addr().String(), "tls", s.cfg.TLSConfig != nil, "auth", s.auth != nil,
		"keepalive_timeout", s.cfg.KeepAliveTimeout.String(), "keepalive_interval", s.cfg.KeepAliveInterval.String(),
		"max_frame", s.cfg.MaxFrameSize, "max_conns", s.cfg.MaxConns)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("Accept failed; retrying", "error", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.accept(nc, ConnOptions{})
	}
}

// Transports: how a connection reached the server (ConnInfo.Transport,
// conn.transport in Lua).
const (
	TransportTCP       = "tcp"
	TransportTLS       = "tls"
	TransportWebSocket = "ws"
	TransportHTTP      = "http"
)

// ConnOptions describe a connection that reached the server another way
// than its TCP listener (see ServeConn).
type ConnOptions struct {
	// Transport names the way: TransportWebSocket or TransportHTTP.
	Transport string
	// PeerCertificates are the client's verified certificates when the
	// transport did the TLS handshake with client certificates: they name
	// the identity, as on the TCP listener with mTLS.
	PeerCertificates []*x509.Certificate
}

// ServeConn serves nc, a connection that reached the server through
// another transport (a WebSocket, an HTTP request), exactly as it serves
// the connections its listener accepts: the same limits, authentication,
// keep-alive, handlers and shutdown. nc carries protocol frames, one per
// line, both ways; TLS, if any, was the transport's. It does not wait.
func (s *Server) ServeConn(nc net.Conn, opts ConnOptions) {
	s.accept(nc, opts)
}

// accept registers a new connection and starts it, or turns it away when
// the server is full or shutting down.
func (s *Server) accept(nc net.Conn, opts ConnOptions) {
	transport := opts.Transport
	if transport == "" {
		transport = TransportTCP
		if s.cfg.TLSConfig != nil {
			transport = TransportTLS
			// Wrapped now, handshaken later on the connection's goroutine:
			// the wire's socket never changes once other goroutines can see it.
			nc = tls.Server(&sniffConn{Conn: nc}, s.cfg.TLSConfig)
		}
	}
	id := s.cfg.IDPrefix + "c" + strconv.FormatUint(s.connSeq.Add(1), 10)
	remote := nc.RemoteAddr().String()
	c := &Conn{
		srv:         s,
		id:          id,
		remote:      remote,
		transport:   transport,
		connectedAt: time.Now(),
		w:           newWire(nc, &s.wcfg),
	}
	if len(opts.PeerCertificates) > 0 {
		c.adoptCertificate(opts.PeerCertificates[0])
	}
	c.w.onUnpark = func() { go c.resume() }
	c.w.onClosing = func() { c.advance(stateClosing) }
	ip := remoteIP(nc)
	s.mu.Lock()
	if s.parker != nil && opts.Transport == "" {
		c.w.fd = socketFD(c.w)
	}
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if s.cfg.MaxConnsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		s.mu.Unlock()
		s.log.Warn("Connection refused: too many from one address", "remote", remote, "max_conns_per_ip", s.cfg.MaxConnsPerIP)
		s.counters.refused.Add(1)
		s.turnAway(nc, CloseCause{Kind: CloseTooManyFromAddress})
		return
	}
	needsAuth := s.needsAuthentication()
	full := len(s.conns)-s.evicting >= s.cfg.MaxConns
	crowded := needsAuth && s.pending.Len() >= s.cfg.MaxUnauthenticated
	var victim *Conn
	if (full || crowded) && s.pending.Len() > 0 && s.evicting < s.cfg.MaxUnauthenticated {
		// Make room at the expense of the oldest peer that has proven
		// nothing yet; the evictions still closing are bounded too.
		victim = s.evictPending()
		full = len(s.conns)-s.evicting >= s.cfg.MaxConns
		crowded = false
	}
	if full || crowded {
		s.mu.Unlock()
		cause := CloseCause{Kind: CloseServerFull}
		if !full {
			cause = causeEvicted
		}
		s.log.Warn("Connection refused: "+cause.String(), "remote", remote, "max_conns", s.cfg.MaxConns, "max_unauthenticated", s.cfg.MaxUnauthenticated)
		s.counters.refused.Add(1)
		s.turnAway(nc, cause)
		return
	}
	if needsAuth {
		c.pending = s.pending.PushBack(c)
		c.w.reader.SetMaxFrameSize(s.cfg.MaxFrameUnauthenticated)
	}
	s.conns[id] = c
	s.counters.connsTotal.Add(1)
	s.perIP[ip]++
	c.ip = ip
	s.connWG.Add(1)
	s.mu.Unlock()
	if victim != nil {
		victim.logger().Info("Closing an unauthenticated connection to admit a new one", "max_unauthenticated", s.cfg.MaxUnauthenticated)
		victim.w.requestCloseNow(causeEvicted)
	}
	go c.serve()
}

// contain stops a panic in a connection's goroutine from taking the server
// down: the connection is cut off and the panic logged; the others go on.
func (s *Server) contain(c *Conn) {
	r := recover()
	if r == nil {
		return
	}
	s.log.Error("Connection goroutine panicked; closing the connection", "conn", c.id, "panic", r, "stack", string(debug.Stack()))
	c.w.abort(causeInternal)
	// This goroutine owned the socket: unregister it, then close it.
	if p := s.parker; p != nil {
		p.forget(c)
	}
	c.w.nc.Close()
	c.cancelContext()
	s.mu.Lock()
	_, registered := s.conns[c.id]
	s.mu.Unlock()
	if registered {
		s.remove(c)
	}
}

// remoteIP is the address part of a connection's remote address.
func remoteIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		return nc.RemoteAddr().String()
	}
	return host
}

// turnAway sends the close frame of cause to a connection that will not be
// served, and closes it. The socket is new, so the write fits its buffer and
// does not block; the deadline is a guard.
func (s *Server) turnAway(nc net.Conn, cause CloseCause) {
	key, text := cause.frame()
	nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)) //nolint:errcheck // best effort
	nc.Write(appendCloseFrame(nil, key, text))                  //nolint:errcheck // best effort
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck // best effort
	}
	nc.Close()
}

// needsAuthentication reports whether new connections must prove
// something (a TLS handshake, an auth frame) before they are served.
func (s *Server) needsAuthentication() bool { return s.auth != nil || s.cfg.TLSConfig != nil }

// evictPending takes the oldest unauthenticated connection off the pending
// list, to be closed once s.mu is released: it no longer counts against
// MaxConns, but against the evictions in progress. s.mu must be held and
// the list must not be empty.
func (s *Server) evictPending() *Conn {
	c := s.pending.Remove(s.pending.Front()).(*Conn)
	c.pending = nil
	c.evicted = true
	s.evicting++
	s.counters.unauthEvicted.Add(1)
	return c
}

// authenticated takes c off the pending list, lifts its frame limit to the
// full one and opens it: from now on it is addressable. It reports false
// when c is already closing (evicted, or the server shuts down).
func (s *Server) authenticated(c *Conn) bool {
	s.mu.Lock()
	if c.pending != nil {
		s.pending.Remove(c.pending)
		c.pending = nil
	}
	opened := c.advanceLocked(stateOpen)
	s.mu.Unlock()
	c.w.reader.SetMaxFrameSize(s.cfg.MaxFrameSize)
	return opened
}

// remove takes c out of the server for good (it is closed) and frees what
// it held of the server's limits.
func (s *Server) remove(c *Conn) {
	s.mu.Lock()
	c.advanceLocked(stateClosing)
	c.advanceLocked(stateClosed)
	if c.pending != nil {
		s.pending.Remove(c.pending)
		c.pending = nil
	}
	if c.evicted {
		c.evicted = false
		s.evicting--
	}
	if _, ok := s.conns[c.id]; ok {
		s.counters.fold(c.w) // under mu, so Stats never counts it twice
	}
	delete(s.conns, c.id)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	s.mu.Unlock()
}

// audit reports an event if an Auditor is configured.
func (s *Server) audit(e AuditEvent) {
	if s.cfg.Audit != nil {
		s.cfg.Audit.Audit(e)
	}
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// Shutdown stops accepting, asks every connection to close with reason
// "server shutdown" (frames already received are answered first), and waits
// for them to finish. When ctx ends first, the remaining connections are
// closed outright, the contexts of their handlers cancelled, and ctx's error
// returned without waiting further for handlers that ignore their context.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.stopServing()
		for ln := range s.listeners {
			ln.Close()
		}
	}
	conns := s.snapshot()
	s.mu.Unlock()
	s.log.Info("Shutting down", "connections", len(conns))
	for _, c := range conns {
		c.w.requestClose(causeServerShutdown)
	}
	finished := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		s.stopBase()
		s.closeAuth()
		s.stopParker()
		return nil
	case <-ctx.Done():
	}
	// Out of time: cut every connection off and cancel the handlers'
	// contexts. Like net/http, do not wait for handlers that ignore them.
	s.mu.Lock()
	conns = s.snapshot()
	s.mu.Unlock()
	for _, c := range conns {
		c.w.abort(CloseCause{Kind: CloseTimedOut, Detail: "shutdown timed out"})
	}
	s.stopBase()
	s.closeAuth()
	s.stopParker()
	return fmt.Errorf("shutdown: %w", ctx.Err())
}

// stopParker stops the parker once no connection is parked (Shutdown has
// woken them all), and waits for the keep-alive scheduler, which ends when
// done is closed.
func (s *Server) stopParker() {
	s.mu.Lock()
	p := s.parker
	s.mu.Unlock()
	if p != nil {
		p.stop()
	}
	s.background.Wait()
}

// closeAuth stops the authority's timers once no connection can use it.
func (s *Server) closeAuth() {
	if s.auth != nil {
		s.auth.close()
	}
}

// snapshot returns every connection being served, whatever its state;
// s.mu must be held.
func (s *Server) snapshot() []*Conn { return collect(s.conns) }

// addressable returns the open connections; s.mu must be held.
func (s *Server) addressable() []*Conn { return collect(s.open) }

func collect(m map[string]*Conn) []*Conn {
	conns := make([]*Conn, 0, len(m))
	for _, c := range m {
		conns = append(conns, c)
	}
	return conns
}

// ConnectionCount returns how many connections the server holds, in any
// state before closed: the sockets that count against MaxConns.
func (s *Server) ConnectionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Connections returns a snapshot of the open connections: authenticated,
// or served without authentication. Those still in their handshake or
// authentication, and those closing, are not listed.
func (s *Server) Connections() []ConnInfo {
	s.mu.Lock()
	conns := s.addressable()
	s.mu.Unlock()
	infos := make([]ConnInfo, len(conns))
	for i, c := range conns {
		infos[i] = c.Info()
	}
	return infos
}

// Conn returns the open connection with id, or nil: one still proving
// who it is, or closing, is not there to be sent to.
func (s *Server) Conn(id string) *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[id]
}

// Range calls f for each open connection until f returns false. The set is
// a snapshot taken before the first call, so f may close connections.
func (s *Server) Range(f func(*Conn) bool) {
	s.mu.Lock()
	conns := s.addressable()
	s.mu.Unlock()
	for _, c := range conns {
		if !f(c) {
			return
		}
	}
}
