package gateway

import (
	"fmt"
	"sync/atomic"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Mailboxes is the durable store behind resuming connections (the
// delivery package's): a client that authenticates with "resume": true is
// attached to its identity's mailbox, receives what waits there and what
// arrives while it stays, and acks it. The gateway knows connections; the
// store knows identities and sequence numbers.
type Mailboxes interface {
	// Attach opens identity's mailbox for delivery to r and returns how
	// many messages wait in it. Nothing is delivered before Start.
	Attach(identity string, r MailboxReceiver) (Mailbox, uint64, error)
}

// Mailbox is one connection's attachment to its identity's mailbox.
type Mailbox interface {
	// Start begins delivery: what waits first, in order, then what arrives.
	Start()
	// Ack records that the messages up to seq are done (cumulative).
	Ack(seq uint64)
	// Close ends delivery to this connection and waits until it has.
	Close()
}

// MailboxReceiver is where a Mailbox delivers: a *Conn.
type MailboxReceiver interface {
	// Deliver pushes one stored message. An error means the receiver is
	// gone (or could not take it) and delivery to it should stop.
	Deliver(seq uint64, id, route string, payload []byte) error
	// Close ends the connection with reason: a mailbox that can no longer
	// deliver to it closes it, so its client reconnects and resumes.
	Close(reason string)
}

// mailboxState is a resuming connection's side of its mailbox.
type mailboxState struct {
	box       Mailbox       // set before the connection opens; reader goroutine
	delivered atomic.Uint64 // the highest seq pushed to this connection
}

// Deliver pushes a message from the connection's mailbox: a data frame
// carrying its seq, its stored id and route. The client acks it with
// {"type":"ack","payload":{"seq":seq}}.
func (c *Conn) Deliver(seq uint64, id, route string, payload []byte) error {
	if c.mb == nil {
		return fmt.Errorf("deliver to %s: %w", c.id, ErrNoMailbox)
	}
	// Recorded before the frame can reach the peer, so its ack is never
	// taken for an ack of a seq it was not sent.
	if seq > c.mb.delivered.Load() {
		c.mb.delivered.Store(seq)
	}
	if err := c.w.enqueueMessage(&protocol.Message{Type: protocol.TypeData, ID: id, Route: route, Seq: seq, Payload: payload}); err != nil {
		return fmt.Errorf("deliver to %s: %w", c.id, err)
	}
	return nil
}

// Resumed reports whether the connection is attached to its identity's
// mailbox.
func (c *Conn) Resumed() bool { return c.mb != nil && c.mb.box != nil }

// attachMailbox attaches a connection that asked to resume to its
// identity's mailbox, and returns what its auth reply says: whether it
// resumed and how many messages wait. A store that cannot be reached
// leaves the connection without its mailbox (the reply says so), not
// without service.
func (c *Conn) attachMailbox() (resumed bool, pending uint64) {
	boxes := c.srv.cfg.Mailboxes
	if boxes == nil || c.Identity() == "" {
		return false, 0
	}
	c.mb = &mailboxState{}
	box, pending, err := boxes.Attach(c.Identity(), c)
	if err != nil {
		c.mb = nil
		c.logger().Warn("Mailbox unavailable: the connection is served without it", "error", err)
		return false, 0
	}
	c.mb.box = box
	return true, pending
}

// ack handles an ack frame: its seq must be one this connection was sent.
func (c *Conn) ack(m *protocol.Message) {
	if !c.Resumed() {
		c.w.enqueueError(m.ID, protocol.Errorf(protocol.CodeInvalidMessage, `this connection has no mailbox to ack: authenticate with "resume": true`)) //nolint:errcheck // closing
		return
	}
	seq, err := protocol.ParseAck(m.Payload)
	if err == nil {
		if last := c.mb.delivered.Load(); seq > last {
			err = protocol.Errorf(protocol.CodeInvalidMessage, "ack seq %d was not delivered on this connection (last delivered: %d)", seq, last)
		}
	}
	if err != nil {
		c.w.enqueueError(m.ID, err) //nolint:errcheck // closing
		return
	}
	c.mb.box.Ack(seq)
}

// detachMailbox ends delivery to a closed connection.
func (c *Conn) detachMailbox() {
	if c.Resumed() {
		c.mb.box.Close()
	}
}
