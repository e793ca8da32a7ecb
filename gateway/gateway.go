// Package gateway owns sockets: it serves the samgw protocol over TCP and
// dials it as a client.
//
//   - Server accepts connections, answers ping, keepalive and close itself,
//     hands every data message to a Handler, keeps a registry of connections
//     and shuts down gracefully.
//   - Conn is one server-side connection, the handle a Handler replies and
//     pushes through.
//   - Client dials a server, keeps the connection alive, reconnects with
//     backoff and queues sends while disconnected.
//
// Both sides run the same machinery per connection: a reader (decodes,
// tracks activity, dispatches in order) and a flusher that runs only while
// there is something to write (drains a bounded outbound buffer in batches,
// sets write deadlines). Only the flusher writes to a socket; only the
// reader reads. A server's quiet plain-TCP connections are parked without a
// reader goroutine until they have something to do, and one scheduler sends
// every connection's keep-alives.
// The package knows nothing of Lua: scripting implements Handler.
package gateway

import "errors"

// Sentinel errors.
var (
	// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
	ErrServerClosed = errors.New("gateway: server closed")
	// ErrConnClosed is returned when sending on a connection that is closing
	// or closed.
	ErrConnClosed = errors.New("gateway: connection closed")
	// ErrSlowConsumer is the reason a peer that does not read fast enough is
	// disconnected: its outbound queue overflowed or a write timed out.
	ErrSlowConsumer = errors.New("gateway: slow consumer")
	// ErrNoMailbox is returned by Deliver on a connection that did not
	// resume.
	ErrNoMailbox = errors.New("gateway: connection has no mailbox")
	// ErrQueueFull is returned by Client sends when the queue of frames
	// waiting for a connection is full.
	ErrQueueFull = errors.New("gateway: queue full")
	// ErrClientClosed is returned by Client methods after Disconnect.
	ErrClientClosed = errors.New("gateway: client closed")
	// ErrNotConnected is returned by Client calls that need the live
	// connection (AnswerJob) while there is none.
	ErrNotConnected = errors.New("gateway: not connected")
	// ErrConnectionLost fails a Request whose frame was sent on a connection
	// that broke before the reply came: the request may or may not have been
	// handled.
	ErrConnectionLost = errors.New("gateway: connection lost")
)

// Close reasons the server sends in the payload of `close` frames and logs.
const (
	ReasonKeepAliveTimeout = "keepalive timeout"
	ReasonServerShutdown   = "server shutdown"
	ReasonServerFull       = "server full"
	ReasonClosedByClient   = "closed by client"
	ReasonFrameTooLarge    = "frame too large"
	ReasonSlowConsumer     = "slow consumer"
	ReasonPeerClosed       = "peer closed the connection"
	// ReasonTooManyFromAddress refuses a connection beyond MaxConnsPerIP.
	ReasonTooManyFromAddress = "too many connections from this address"
	// ReasonUnauthorized closes a connection that failed to authenticate.
	ReasonUnauthorized = "unauthorized"
	// ReasonAuthTimeout closes a connection that did not authenticate in
	// time.
	ReasonAuthTimeout = "authentication timed out"
	// ReasonUnauthenticatedEvicted closes the oldest connection that has
	// not authenticated yet, to make room for a new one, when
	// MaxUnauthenticated (or MaxConns) is reached.
	ReasonUnauthenticatedEvicted = "too many unauthenticated connections"
	// ReasonBadCompression closes a connection whose compressed input is
	// corrupt or inflates past what its frames explain.
	ReasonBadCompression = "invalid compressed stream"
	// ReasonCompressionUnsupported closes a connection that asked for a
	// stream compression the server does not speak, or on a transport that
	// has its own (WebSocket's permessage-deflate).
	ReasonCompressionUnsupported = "unsupported compression"
)
