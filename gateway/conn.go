package gateway

import (
	"cmp"
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/protocol"
)

// Payloads of the frames the server answers by itself.
var (
	pongPayload  = []byte(`{"message":"pong"}`)
	alivePayload = []byte(`{"status":"alive"}`)
)

// Conn is one client connection of a Server. Its methods are safe for
// concurrent use: a handler serving one connection may push to another.
type Conn struct {
	srv         *Server
	id          string
	remote      string
	transport   string // TransportTCP, TransportTLS, …
	connectedAt time.Time
	w           *wire
	ctx         atomic.Pointer[connContext] // made when first asked for (see Context)
	ctxMu       sync.Mutex                  // guards making and ending ctx
	ctxEnded    bool                        // the connection closed: a context made now is cancelled already
	ip          string
	msg         protocol.Message // the message being handled; reader goroutine only
	value       any              // the handler's per-connection data; reader goroutine only
	sawFrame    bool             // a frame came after the welcome; reader goroutine only

	// Security state, set before the first data frame is handled and read
	// only on the reader goroutine afterwards (identity also by Identity).
	identity  atomic.Pointer[string]    // the authenticated identity's name
	principal atomic.Pointer[principal] // its checks; nil without identities (see grant)
	limiter   *rate.Limiter             // nil: no rate limit
	limited   uint64                    // data frames refused by the limiter since the last rate_limited event
	limitedAt time.Time                 // when the last rate_limited event was reported
	scratch   []byte                    // signature verification buffer
	pending   *list.Element             // in srv.pending until authenticated; guarded by srv.mu
	evicted   bool                      // closed to admit another; guarded by srv.mu
	state     connState                 // where it is in its life; guarded by srv.mu, changed only by advance
	mb        *mailboxState             // set, when it resumes, before it opens (see attachMailbox)
}

// ConnInfo describes a connection, for listings and statistics.
type ConnInfo struct {
	ID           string
	Identity     string // the authenticated identity; "" without authentication
	Transport    string // TransportTCP, TransportTLS, TransportWebSocket or TransportHTTP
	RemoteAddr   string
	ConnectedAt  time.Time
	LastActivity time.Time // when the last frame arrived (or the connect)
	FramesIn     uint64
	FramesOut    uint64
	BytesIn      uint64
	BytesOut     uint64
}

func sum(c *frameCounts) uint64 {
	var n uint64
	for i := range c {
		n += c[i].Load()
	}
	return n
}

// ID returns the connection's id, unique within the server.
func (c *Conn) ID() string { return c.id }

// RemoteAddr returns the peer's address as host:port.
func (c *Conn) RemoteAddr() string { return c.remote }

// Identity returns the authenticated identity of the connection: the
// identity named by its token, or its client certificate's; "" when
// authentication is off or has not happened yet.
func (c *Conn) Identity() string {
	if p := c.identity.Load(); p != nil {
		return *p
	}
	return ""
}

// Server returns the server the connection belongs to, so a handler can
// reach the other connections.
func (c *Conn) Server() *Server { return c.srv }

// Value returns what the handler stored with SetValue. Like SetValue, it may
// only be called from the handler's calls for this connection (HandleData,
// OnConnect, OnClose), which never run concurrently.
func (c *Conn) Value() any { return c.value }

// SetValue keeps v with the connection for the handler.
func (c *Conn) SetValue(v any) { c.value = v }

// logger is the server's logger with the connection's id and address. It
// is made when something is logged, not kept: a quiet connection should not
// pay for a logger of its own.
func (c *Conn) logger() *slog.Logger {
	return c.srv.log.With("conn", c.id, "remote", c.remote)
}

// Context returns a context that is cancelled when the connection closes.
//
// It is made on first use: a quiet connection whose handlers never ask for
// it costs no context (and no entry in the server's).
func (c *Conn) Context() context.Context {
	if cc := c.ctx.Load(); cc != nil {
		return cc.ctx
	}
	c.ctxMu.Lock()
	defer c.ctxMu.Unlock()
	if cc := c.ctx.Load(); cc != nil {
		return cc.ctx
	}
	ctx, cancel := context.WithCancel(c.srv.baseCtx)
	if c.ctxEnded {
		cancel()
	}
	c.ctx.Store(&connContext{ctx: ctx, cancel: cancel})
	return ctx
}

// connContext is a connection's context and its cancel.
type connContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// cancelContext ends the connection's context, if it was made, and any
// made later.
func (c *Conn) cancelContext() {
	c.ctxMu.Lock()
	c.ctxEnded = true
	cc := c.ctx.Load()
	c.ctxMu.Unlock()
	if cc != nil {
		cc.cancel()
	}
}

// lazyContext is the connection's context for a callee that may never use
// it: only its methods make it.
type lazyContext struct{ c *Conn }

func (l lazyContext) Deadline() (time.Time, bool) { return l.c.Context().Deadline() }
func (l lazyContext) Done() <-chan struct{}       { return l.c.Context().Done() }
func (l lazyContext) Err() error                  { return l.c.Context().Err() }
func (l lazyContext) Value(key any) any           { return l.c.Context().Value(key) }

// Info returns a snapshot of the connection's statistics.
func (c *Conn) Info() ConnInfo {
	return ConnInfo{
		ID:           c.id,
		Identity:     c.Identity(),
		Transport:    c.transport,
		RemoteAddr:   c.remote,
		ConnectedAt:  c.connectedAt,
		LastActivity: time.Unix(0, c.w.lastFrame.Load()),
		FramesIn:     sum(&c.w.in),
		FramesOut:    sum(&c.w.out),
		BytesIn:      c.w.bytesIn.Load(),
		BytesOut:     c.w.bytesOut.Load(),
	}
}

// Reply queues a data frame answering msg: it carries msg's id and route and
// the given payload (raw JSON; nil for none). The payload is copied before
// Reply returns. Replies queued while HandleData runs are written once it
// returns, together with the other frames queued by then (pushes meanwhile
// are written at once).
func (c *Conn) Reply(msg *protocol.Message, payload []byte) error {
	return c.w.answerMessage(&protocol.Message{Type: protocol.TypeData, ID: msg.ID, Route: msg.Route, Payload: payload})
}

// ReplyNow is Reply for an answer made on another goroutine than the
// connection's reader, after HandleData returned (a handler that answers
// concurrently): the frame is written at once, not with the reader's
// answers.
func (c *Conn) ReplyNow(msg *protocol.Message, payload []byte) error {
	return c.w.enqueueMessage(&protocol.Message{Type: protocol.TypeData, ID: msg.ID, Route: msg.Route, Payload: payload})
}

// ReplyErrorNow queues an error frame answering the message with id, from
// any goroutine (see ReplyNow). An err that is not a *protocol.Error is
// sent as handler_error without its text.
func (c *Conn) ReplyErrorNow(id string, err error) error {
	return c.w.enqueue(protocol.TypeError, func(dst []byte) []byte { return protocol.AppendErrorFrame(dst, id, err) })
}

// Send pushes a data frame with payload (raw JSON) and route to the
// connection, under a fresh server-made id that no client id can equal, and
// returns that id.
func (c *Conn) Send(payload []byte, route string) (string, error) {
	id := "s-" + strconv.FormatUint(c.srv.pushSeq.Add(1), 10)
	if err := c.w.enqueueMessage(&protocol.Message{Type: protocol.TypeData, ID: id, Route: route, Payload: payload}); err != nil {
		return "", fmt.Errorf("send to %s: %w", c.id, err)
	}
	return id, nil
}

// Publication marks a push as a publication of a topic that keeps history
// (see SendPublication).
type Publication struct {
	Topic  string
	Offset uint64 // per topic, increasing
	Epoch  string // names the history Offset belongs to
}

// SendPublication is Send for a publication of a topic that keeps
// history: the data frame also carries the topic, the publication's offset
// and the history's epoch, so the subscriber can resume after it.
func (c *Conn) SendPublication(payload []byte, route string, p Publication) (string, error) {
	id := "s-" + strconv.FormatUint(c.srv.pushSeq.Add(1), 10)
	m := protocol.Message{Type: protocol.TypeData, ID: id, Route: route, Payload: payload, Topic: p.Topic, Offset: p.Offset, Epoch: p.Epoch}
	if err := c.w.enqueueMessage(&m); err != nil {
		return "", fmt.Errorf("send to %s: %w", c.id, err)
	}
	return id, nil
}

// Close asks the connection to close with reason: frames already received
// are handled and answered, then a close frame {"reason": reason} is sent.
// It does not wait.
func (c *Conn) Close(reason string) {
	c.w.requestClose(CloseCause{Kind: CloseRequested, Detail: reason})
}

// serve runs the connection on its reader goroutine until it closes (or
// until the reader moves to a fresh goroutine, which then carries on; see
// wire.repark). The goroutine that ends the connection ends its share of
// the server's connection count.
func (c *Conn) serve() {
	moved := false
	defer func() {
		if !moved {
			c.srv.connWG.Done()
		}
	}()
	defer c.srv.contain(c)
	if c.transport == TransportTLS && (!c.advance(stateHandshaking) || !c.handshake()) {
		c.w.nc.Close()
		c.cancelContext()
		c.srv.remove(c)
		return
	}
	if c.srv.cfg.Rate > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(c.srv.cfg.Rate), c.srv.cfg.RateBurst)
	}
	if k := c.srv.keepAlives; k != nil {
		k.add(c.w)
	}
	c.logger().Info("Client connected", c.identityAttrs()...)
	c.audit(AuditConnect, "", "")
	cause, ok := c.welcome()
	if ok {
		// The handshake, authentication and logging above grew this
		// goroutine's stack; the frames are read elsewhere: the parker holds
		// the connection until its peer sends (at once if it has already),
		// or a fresh goroutine waits on the smallest stack.
		moved = true
		c.moveOn()
		return
	}
	c.end(cause)
}

// moveOn hands the frame loop on when the reader was asked to (see
// wire.repark): to the parker, which holds the connection without a
// goroutine until it has something to do, or to a fresh goroutine.
func (c *Conn) moveOn() {
	// Frames already read (those that came with the auth frame) must be
	// served first: the parker wakes only for new data.
	// A compressed connection is never parked: its inflater may hold
	// input already read from the socket.
	if p := c.srv.parker; p != nil && c.w.reader.Buffered() == 0 && !c.w.compressed.Load() && p.park(c) {
		return
	}
	go c.resume()
}

// resume carries on serving frames on a fresh goroutine after a repark.
func (c *Conn) resume() {
	moved := false
	defer func() {
		if !moved {
			c.srv.connWG.Done()
		}
	}()
	defer c.srv.contain(c)
	var cause CloseCause
	if cause, moved = c.frames(); moved {
		return
	}
	c.end(cause)
}

// end closes the connection for cause and reports it. The reader that
// owns the connection calls it: it withdraws the connection from senders,
// unregisters its socket from the parker, and only then closes it, so no
// other connection can be handed the same descriptor number while it is
// still registered as this one's.
func (c *Conn) end(cause CloseCause) {
	c.advance(stateClosing)
	if p := c.srv.parker; p != nil {
		p.forget(c)
	}
	c.w.finish(cause)
	c.cancelContext()
	c.srv.remove(c)
	c.detachMailbox()
	c.leaveQueues()
	cause = c.w.closeCause()
	reason := cause.String()
	switch cause.Kind {
	case CloseSlowConsumer:
		c.srv.counters.slowConsumers.Add(1)
		c.audit(AuditSlowConsumer, "", reason)
	case CloseKeepAliveTimeout:
		c.srv.counters.keepAliveTimeouts.Add(1)
	}
	c.reportRateLimited("")
	c.audit(AuditDisconnect, "", reason)
	if h, ok := c.srv.cfg.Handler.(CloseHandler); ok {
		c.safely("OnClose", func() { h.OnClose(c, reason) })
	}
	info := c.Info()
	c.logger().Info("Client disconnected", append(c.identityAttrs(), "reason", reason, "frames_in", info.FramesIn, "frames_out", info.FramesOut,
		"duration", time.Since(c.connectedAt).Round(time.Millisecond).String())...)
}

// handshake runs the TLS handshake within the handshake timeout and takes
// the identity of a verified client certificate.
func (c *Conn) handshake() bool {
	tc := c.w.nc.(*tls.Conn)
	ctx, cancel := context.WithTimeout(c.Context(), c.srv.cfg.HandshakeTimeout)
	defer cancel()
	if sc, ok := tc.NetConn().(*sniffConn); ok {
		deadline, _ := ctx.Deadline()
		isTLS, err := sc.sniff(deadline)
		if err != nil {
			c.logger().Info("TLS handshake failed", "error", err)
			return false
		}
		if !isTLS {
			c.logger().Info("TLS handshake failed: the client speaks plaintext")
			sc.refusePlaintext()
			return false
		}
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		c.logger().Info("TLS handshake failed", "error", err)
		return false
	}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		c.adoptCertificate(certs[0])
	}
	return true
}

// adoptCertificate makes the identity a verified client certificate names
// the connection's.
func (c *Conn) adoptCertificate(cert *x509.Certificate) {
	name := CertIdentity(cert)
	c.identity.Store(&name)
	if c.srv.auth != nil {
		// nil for an identity not listed: welcome refuses it.
		if p := c.srv.auth.byName(name); p != nil {
			c.principal.Store(p)
		}
	}
}

// Transport names how the connection reached the server: TransportTCP,
// TransportTLS, TransportWebSocket or TransportHTTP.
func (c *Conn) Transport() string { return c.transport }

// identityAttrs are the log attributes naming the connection's identity,
// none without one.
func (c *Conn) identityAttrs() []any {
	if id := c.Identity(); id != "" {
		return []any{"identity", id}
	}
	return nil
}

// audit reports an event about this connection.
func (c *Conn) audit(event, route, reason string) {
	c.srv.audit(AuditEvent{Event: event, Conn: c.id, Remote: c.remote, Identity: c.Identity(), Route: route, Reason: reason})
}

// readLoop reads and dispatches frames until the connection must close, and
// returns why.
// welcome authenticates the connection (when the server requires it) and
// runs OnConnect; it reports whether the connection may go on to frames.
func (c *Conn) welcome() (CloseCause, bool) {
	byToken, authID, resume, compress := false, "", false, ""
	switch {
	case c.srv.auth != nil && c.Identity() == "":
		c.advance(stateAuthenticating)
		var cause CloseCause
		if cause, byToken, authID, resume, compress = c.authenticate(); !byToken {
			return cause, false
		}
		if compress != "" {
			if why := c.compressionRefused(compress); why != "" {
				return c.refuseCompression(authID, why), false
			}
			c.w.inflateInput() // before another frame is read
		}
	case c.srv.auth != nil && c.principal.Load() == nil:
		// With identities, the file is the allow-list: a certificate from
		// the CA whose identity is not listed gets no access at all (not
		// access without a route ACL or a signature requirement).
		return c.refuseAuth("client certificate identity "+strconv.Quote(c.Identity())+" is not listed", ""), false
	case c.Identity() != "":
		c.audit(AuditAuthOK, "", "client certificate")
	}
	var resumed bool
	var pending uint64
	if resume {
		resumed, pending = c.attachMailbox()
	}
	if !c.srv.authenticated(c) {
		// Its end was decided meanwhile (evicted, shut down, aborted): the
		// cause given with it wins in finish.
		c.detachMailbox()
		return cmp.Or(c.w.requestedCause(), c.w.closeCause(), CloseCause{Kind: CloseRequested, Detail: "closed before it opened"}), false
	}
	if byToken {
		// Told only once it is open: a client that has read its auth reply
		// is addressable, so a push sent after that reaches it.
		payload := protocol.AppendAuthReply(nil, c.Identity())
		if resume {
			payload = protocol.AppendResumeAuthReply(nil, c.Identity(), resumed, pending)
		}
		reply := &protocol.Message{Type: protocol.TypeAuth, ID: authID, Payload: payload}
		if compress != "" {
			reply.Payload = protocol.AppendCompressOption(payload, compress)
			c.w.deflateOutput(reply) //nolint:errcheck // closing
		} else {
			c.w.enqueueMessage(reply) //nolint:errcheck // closing
		}
	}
	if resumed {
		// After the reply: the mailbox's first message follows it.
		c.mb.box.Start()
	}
	if h, ok := c.srv.cfg.Handler.(ConnectHandler); ok {
		var err error = errInternal // stays so if OnConnect panics
		c.safely("OnConnect", func() { err = h.OnConnect(lazyContext{c}, c) })
		if err != nil {
			text := "rejected"
			var pe *protocol.Error
			if errors.As(err, &pe) {
				text = pe.Message
			}
			return CloseCause{Kind: CloseRejected, Detail: text}, false
		}
	}
	return CloseCause{}, true
}

// frames reads and handles frames until the connection ends, or until the
// reader is asked to move to a fresh goroutine (moved).
//
// When moved, the frame loop goes on elsewhere (moveOn) and the caller
// must return without touching the connection.
func (c *Conn) frames() (cause CloseCause, moved bool) {
	if k := c.srv.keepAlives; k != nil {
		k.recheckLater(c.w)
	}
	c.w.reparkable.Store(true)
	for {
		frame, err := c.w.readFrame()
		if err != nil {
			c.w.reparkable.Store(false)
			if errors.Is(err, errRepark) {
				c.moveOn()
				return CloseCause{}, true
			}
			return c.readFailed(err), false
		}
		c.w.beginDispatch()
		byPeer := c.dispatch(frame)
		c.w.endDispatch(c.w.moreBuffered())
		if byPeer {
			c.w.reparkable.Store(false)
			return causeByPeer, false
		}
	}
}

// authenticate requires an auth frame with a valid token first, within the
// auth timeout, and returns the frame's id for the reply (welcome sends it
// once the connection is open). On failure the peer gets error
// unauthorized, then close.
func (c *Conn) authenticate() (cause CloseCause, ok bool, id string, resume bool, compress string) {
	timer := time.AfterFunc(c.srv.cfg.AuthTimeout, func() { c.w.requestClose(causeAuthTimeout) })
	defer timer.Stop()
	frame, err := c.w.readFrame()
	if err != nil {
		if cause := c.readFailed(err); cause.Kind != CloseAuthTimeout {
			return cause, false, "", false, ""
		}
		return c.refuseAuth(ReasonAuthTimeout, ""), false, "", false, ""
	}
	m := &c.msg
	if err := protocol.Decode(frame, m, c.w.cfg.limits); err != nil || m.Type != protocol.TypeAuth {
		return c.refuseAuth("the first frame must be auth", m.ID), false, "", false, ""
	}
	c.w.in[typeIndex(protocol.TypeAuth)].Add(1) // counted like every frame dispatch sees
	p := c.srv.auth.byToken(protocol.ParseAuthToken(m.Payload))
	if p == nil {
		return c.refuseAuth("invalid token", m.ID), false, "", false, ""
	}
	if !timer.Stop() {
		return c.refuseAuth(ReasonAuthTimeout, m.ID), false, "", false, ""
	}
	c.principal.Store(p)
	c.identity.Store(&p.name)
	c.audit(AuditAuthOK, "", "token")
	return CloseCause{}, true, m.ID, protocol.ParseAuthResume(m.Payload), protocol.ParseCompress(m.Payload)
}

// refuseAuth answers a failed authentication with error unauthorized
// (answering the frame with id), counts and audits it, and returns the
// cause the connection closes with.
func (c *Conn) refuseAuth(why, id string) CloseCause {
	c.w.enqueueError(id, protocol.Errorf(protocol.CodeUnauthorized, "%s", why)) //nolint:errcheck // closing
	c.srv.counters.authFailures.Add(1)
	c.audit(AuditAuthFailed, "", why)
	c.logger().Info("Authentication failed", "reason", why)
	return CloseCause{Kind: CloseUnauthorized, Detail: why}
}

// replyAuth answers an auth frame: {"ok":true,"identity":name}.
func (c *Conn) replyAuth(id, name string) {
	payload := protocol.AppendAuthReply(nil, name)
	c.w.enqueueMessage(&protocol.Message{Type: protocol.TypeAuth, ID: id, Payload: payload}) //nolint:errcheck // closing
}

// reauthenticate answers an auth frame on an authenticated connection (one
// with a client certificate may still send one): the token must name the
// same identity.
func (c *Conn) reauthenticate(m *protocol.Message) {
	if c.srv.auth == nil {
		c.w.enqueueError(m.ID, protocol.Errorf(protocol.CodeInvalidMessage, "authentication is not enabled on this server")) //nolint:errcheck // closing
		return
	}
	if c.refuseForeignToken(m) {
		return
	}
	c.replyAuth(m.ID, c.Identity())
}

// refuseForeignToken answers an auth frame on an open connection whose
// token does not name the connection's identity with error unauthorized
// (counted and audited), and reports whether it did.
func (c *Conn) refuseForeignToken(m *protocol.Message) bool {
	if p := c.srv.auth.byToken(protocol.ParseAuthToken(m.Payload)); p != nil && p.name == c.Identity() {
		return false
	}
	c.srv.counters.authFailures.Add(1)
	c.audit(AuditAuthFailed, "", "token does not match the connection's identity")
	c.w.enqueueError(m.ID, protocol.Errorf(protocol.CodeUnauthorized, "the token does not match this connection's identity")) //nolint:errcheck // closing
	return true
}

// admit applies the connection's limits to a data frame: rate, route access
// and signature. The error is the frame the peer gets instead of an answer.
func (c *Conn) admit(m *protocol.Message) error {
	if c.limiter != nil && !c.limiter.Allow() {
		c.srv.counters.rateLimited.Add(1)
		c.limited++
		if now := time.Now(); now.Sub(c.limitedAt) >= rateAuditInterval {
			c.limitedAt = now
			c.reportRateLimited(m.Route)
		}
		return protocol.Errorf(protocol.CodeRateLimited, "more than %g data frames per second", c.srv.cfg.Rate)
	}
	p := c.grant()
	if p == nil {
		return nil
	}
	if p.revoked.Load() {
		c.w.requestClose(CloseCause{Kind: CloseUnauthorized, Detail: ReasonRevoked})
		return protocol.Errorf(protocol.CodeUnauthorized, "%s", ReasonRevoked)
	}
	if err := c.refuse(p, access.KindRoute, cmp.Or(m.Route, "default")); err != nil {
		return err
	}
	if p.key != nil {
		var err error
		if c.scratch, err = c.srv.auth.verify(c.Context(), p, m, c.scratch); err != nil {
			switch pe := err.(*protocol.Error); pe.Code {
			case protocol.CodeBadSignature:
				c.srv.counters.badSigs.Add(1)
				c.audit(AuditBadSignature, m.Route, pe.Message)
			case protocol.CodeReplay:
				c.srv.counters.replays.Add(1)
				c.audit(AuditReplay, m.Route, pe.Message)
			}
			return err
		}
	}
	return nil
}

// rateAuditInterval is how often a connection's refused frames are
// reported: a flood becomes one rate_limited event a second, not one
// audit line per frame.
const rateAuditInterval = time.Second

// reportRateLimited audits the frames refused since the last report.
func (c *Conn) reportRateLimited(route string) {
	if c.limited == 0 {
		return
	}
	c.srv.audit(AuditEvent{Event: AuditRateLimited, Conn: c.id, Remote: c.remote, Identity: c.Identity(), Route: route,
		Reason: "data frames over the rate limit", Count: c.limited})
	c.limited = 0
}

// readFailed is the cause of the error that ended reading; an oversized
// frame is answered with its error before the connection closes.
func (c *Conn) readFailed(err error) CloseCause {
	cause := readCause(err, c.w.requestedCause())
	if cause.Kind == CloseFrameTooLarge {
		c.w.enqueueError("", err) //nolint:errcheck // closing anyway
	}
	return cause
}

// dispatch handles one frame and reports whether the peer asked to close.
func (c *Conn) dispatch(frame []byte) (closeRequested bool) {
	m := &c.msg
	if err := protocol.Decode(frame, m, c.w.cfg.limits); err != nil {
		c.srv.counters.invalid.Add(1)
		c.logger().Debug("Invalid frame", "error", err, "id", m.ID)
		c.w.enqueueError(m.ID, err) //nolint:errcheck // a closing connection needs no answer
		return false
	}
	c.w.in[typeIndex(m.Type)].Add(1)
	first := !c.sawFrame
	c.sawFrame = true
	if c.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		if m.Type == protocol.TypeAuth {
			c.logger().Debug("Received auth", "id", m.ID) // its payload is a credential: never logged
		} else {
			c.logger().Debug("Received "+string(m.Type), "id", m.ID, "route", m.Route, "payload", truncatePayload(m.Payload))
		}
	}
	switch m.Type {
	case protocol.TypeData:
		if err := c.admit(m); err != nil {
			c.w.enqueueError(m.ID, err) //nolint:errcheck // closing
			return false
		}
		c.handleData(m)
	case protocol.TypeAuth:
		if algo := protocol.ParseCompress(m.Payload); algo != "" {
			c.compressAfterAuth(m, algo, first)
			return false
		}
		c.reauthenticate(m)
	case protocol.TypeAck:
		if job, ok, err := protocol.ParseJob(m.Payload); ok && err == nil {
			c.answerJob(m, job, JobDone)
		} else if ok {
			c.w.enqueueError(m.ID, err) //nolint:errcheck // closing
		} else {
			c.ack(m)
		}
	case protocol.TypeNack:
		c.jobFrame(m, JobRetry)
	case protocol.TypeProgress:
		c.jobFrame(m, JobProgress)
	case protocol.TypePing:
		c.w.answerMessage(&protocol.Message{Type: protocol.TypePong, ID: m.ID, Payload: pongPayload}) //nolint:errcheck // closing
	case protocol.TypeKeepAlive:
		c.w.answerMessage(&protocol.Message{Type: protocol.TypeKeepAlive, ID: m.ID, Payload: alivePayload}) //nolint:errcheck // closing
	case protocol.TypeClose:
		return true
	}
	return false
}

// handleData calls the handler, turning its errors and panics into error
// frames.
func (c *Conn) handleData(m *protocol.Message) {
	defer func() {
		if r := recover(); r != nil {
			c.logger().Error("Handler panicked", "panic", r, "id", m.ID, "stack", string(debug.Stack()))
			c.w.enqueueError(m.ID, errInternal) //nolint:errcheck // closing
		}
	}()
	err := c.srv.cfg.Handler.HandleData(lazyContext{c}, c, m)
	if err == nil {
		return
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		c.w.enqueueError(m.ID, pe) //nolint:errcheck // closing
		return
	}
	if errors.Is(err, ErrConnClosed) || errors.Is(err, ErrSlowConsumer) {
		return // the connection is going away; nobody to tell
	}
	c.logger().Warn("Handler failed", "error", err, "id", m.ID)
	c.w.enqueueError(m.ID, errInternal) //nolint:errcheck // closing
}

// safely runs a hook, containing a panic.
func (c *Conn) safely(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			c.logger().Error(what+" panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

var errInternal = protocol.Errorf(protocol.CodeHandlerError, "internal error")

// truncatePayload keeps debug logs of large payloads short.
func truncatePayload(p []byte) string {
	const n = 512
	if len(p) > n {
		return string(p[:n]) + "…"
	}
	return string(p)
}
