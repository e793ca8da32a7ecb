package gateway

import (
	"context"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Handler serves the data messages of every connection.
//
// HandleData runs on the connection's reader goroutine: the messages of one
// connection are handled one at a time, in order, while different
// connections run in parallel. msg and its Payload are valid only until
// HandleData returns. A handler answers with c.Reply (any number of times,
// or not at all) and may push to other connections with their Send.
//
// An error becomes an `error` frame answering msg: a *protocol.Error is sent
// as it is, any other error as handler_error "internal error" (and logged),
// so internals never reach the peer. A panic is recovered the same way.
type Handler interface {
	HandleData(ctx context.Context, c *Conn, msg *protocol.Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn, msg *protocol.Message) error

// HandleData calls f.
func (f HandlerFunc) HandleData(ctx context.Context, c *Conn, msg *protocol.Message) error {
	return f(ctx, c, msg)
}

// ConnectHandler is implemented by handlers that want to know of new
// connections. OnConnect runs on the connection's reader goroutine before any
// frame is read; an error rejects the connection: it is sent close with the
// error's text as the reason (a *protocol.Error's Message, or "rejected").
type ConnectHandler interface {
	OnConnect(ctx context.Context, c *Conn) error
}

// CloseHandler is implemented by handlers that want to know when a
// connection is gone. OnClose runs once per connection, after its socket is
// closed and it has left the registry.
type CloseHandler interface {
	OnClose(c *Conn, reason string)
}

// ServeHandler is implemented by handlers that do work of their own while
// the server serves, not only in answer to a connection (timers, say).
// OnServe runs once, when the server first serves, with the server and a
// context that ends when its Shutdown begins: the handler stops that work
// then. It must not block.
type ServeHandler interface {
	OnServe(ctx context.Context, s *Server)
}

// Echo answers every data message with a data message carrying the same
// payload, id and route. It is the server's default handler.
var Echo Handler = HandlerFunc(func(_ context.Context, c *Conn, msg *protocol.Message) error {
	return c.Reply(msg, msg.Payload)
})
