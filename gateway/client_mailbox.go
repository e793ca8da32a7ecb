package gateway

import (
	"fmt"
	"sync"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultDedupeWindow is how many mailbox message ids a Client remembers
// to drop duplicates.
const DefaultDedupeWindow = 4096

// Acks are cumulative, so one ack after many messages says as much as one
// per message: a client acks once it has handled ackBatch messages since
// the last ack, or ackDelay after the first of them, whichever comes first
// (and before it disconnects).
const (
	ackBatch = 64
	ackDelay = 10 * time.Millisecond
)

// inbox is a client's side of its identity's mailbox: what the last auth
// reply said, the seq to ack next, and the ids recently handled, to drop
// messages delivered again after a reconnect.
type inbox struct {
	mu      sync.Mutex
	resumed bool
	pending uint64
	toAck   uint64      // the highest seq handled and not yet acked
	unacked int         // messages handled since the last ack
	timer   *time.Timer // sends the ack ackDelay after the first unacked message; nil until then
	seen    map[string]struct{}
	order   []string // seen's ids, oldest first (a ring of DedupeWindow)
	next    int
	window  int
}

func newInbox(window int) *inbox {
	return &inbox{seen: make(map[string]struct{}, window), order: make([]string, 0, window), window: window}
}

// duplicate reports whether id was handled within the window, and
// remembers it if not.
func (b *inbox) duplicate(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[id]; ok {
		return true
	}
	if len(b.order) < b.window {
		b.order = append(b.order, id)
	} else {
		delete(b.seen, b.order[b.next])
		b.order[b.next] = id
		b.next = (b.next + 1) % b.window
	}
	b.seen[id] = struct{}{}
	return false
}

// handled records seq for the next ack and reports whether to ack now
// (else the timer, armed by arm, will).
func (b *inbox) handled(seq uint64, arm func() *time.Timer) (ack uint64, now bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.toAck = max(b.toAck, seq)
	b.unacked++
	if b.unacked < ackBatch {
		if b.unacked == 1 {
			if b.timer == nil {
				b.timer = arm()
			} else {
				b.timer.Reset(ackDelay)
			}
		}
		return 0, false
	}
	return b.take()
}

// take returns the seq to ack, if any, and starts counting afresh.
func (b *inbox) take() (uint64, bool) {
	if b.unacked == 0 {
		return 0, false
	}
	b.unacked = 0
	return b.toAck, true
}

// flushAck sends the ack that is due, if any, on the current connection.
func (c *Client) flushAck() {
	c.inbox.mu.Lock()
	seq, due := c.inbox.take()
	c.inbox.mu.Unlock()
	if !due {
		return
	}
	c.mu.Lock()
	w := c.cur
	c.mu.Unlock()
	if w != nil {
		w.enqueueMessage(&protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendAckPayload(nil, seq)}) //nolint:errcheck // closing: it comes again
	}
}

// stopAcks stops the ack timer (Disconnect, after a last flushAck).
func (c *Client) stopAcks() {
	c.inbox.mu.Lock()
	defer c.inbox.mu.Unlock()
	if c.inbox.timer != nil {
		c.inbox.timer.Stop()
	}
}

// Resumed reports whether the current (or last) connection was attached to
// the identity's mailbox, and how many messages waited there when it
// authenticated.
func (c *Client) Resumed() (resumed bool, pending uint64) {
	c.inbox.mu.Lock()
	defer c.inbox.mu.Unlock()
	return c.inbox.resumed, c.inbox.pending
}

// Ack acks the mailbox messages up to seq (cumulative). Only needed with
// ManualAck: otherwise each message is acked once OnMessage returns.
func (c *Client) Ack(seq uint64) error {
	c.mu.Lock()
	w := c.cur
	c.mu.Unlock()
	if w == nil {
		return fmt.Errorf("ack %d: %w", seq, ErrConnClosed)
	}
	if err := w.enqueueMessage(&protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendAckPayload(nil, seq)}); err != nil {
		return fmt.Errorf("ack %d: %w", seq, err)
	}
	return nil
}

// mailboxMessage handles a data frame from the mailbox: a duplicate (an id
// handled within the window) is not passed on; either way it is acked
// after OnMessage, unless ManualAck.
func (c *Client) mailboxMessage(w *wire, m *protocol.Message) {
	if !c.inbox.duplicate(m.ID) && c.cfg.OnMessage != nil {
		c.cfg.OnMessage(m)
	}
	if c.cfg.ManualAck {
		return
	}
	if seq, now := c.inbox.handled(m.Seq, func() *time.Timer { return time.AfterFunc(ackDelay, c.flushAck) }); now {
		w.enqueueMessage(&protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendAckPayload(nil, seq)}) //nolint:errcheck // closing: it comes again
	}
}

// authAnswered records what the server's auth reply says of the mailbox.
func (c *Client) authAnswered(m *protocol.Message) {
	resumed, pending := protocol.ParseAuthReplyResume(m.Payload)
	c.inbox.mu.Lock()
	c.inbox.resumed, c.inbox.pending = resumed, pending
	c.inbox.toAck, c.inbox.unacked = 0, 0 // what the last connection did not ack comes again
	c.inbox.mu.Unlock()
}
