package scripting

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
)

// ErrRecovering is raised by gateway.subscribe with since while another
// recovery of the same subscription is under way.
var ErrRecovering = errors.New("a recovery of this subscription is under way")

// Bounds of a follower.
const (
	// maxHeld bounds the publications a recovering follower holds; past
	// it, it reads them from the store when the recovery ends.
	maxHeld = 1024
	// fillTimeout bounds the store reads that fill a gap.
	fillTimeout = 2 * time.Second
)

// follower is one connection's subscription to a topic that keeps
// history. It sends each publication once and in offset order, whatever
// order they come in: from this node's publishers, from other nodes (no
// order between them), and from the store while a recovery reads what the
// connection missed. Its mutex orders its sends.
type follower struct {
	mu         sync.Mutex
	last       uint64 // the offset last sent (with known)
	known      bool   // false: nothing sent yet, the next publication sets last
	recovering bool   // a recovery is reading the store: hold what comes
	held       []TopicPush
	overflow   bool // more came than held: read them from the store
}

// take hands a publication to the follower and reports whether it was
// queued on the connection (or held for it).
func (f *follower) take(t *topics, c *gateway.Conn, p TopicPush) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.recovering {
		if len(f.held) < maxHeld {
			f.held = append(f.held, p)
		} else {
			f.overflow = true
		}
		return true
	}
	return f.send(t, c, p)
}

// send sends p unless it was sent already, first filling from the store
// any publication between the last one sent and p; f.mu is held.
func (f *follower) send(t *topics, c *gateway.Conn, p TopicPush) bool {
	if f.known && p.Offset <= f.last {
		return false // sent already (from the store, or it came twice)
	}
	if f.known && p.Prev > f.last {
		f.fill(t, c, p.Topic, p.Offset)
	}
	_, err := c.SendPublication(p.Payload, p.Route, gateway.Publication{Topic: p.Topic, Offset: p.Offset, Epoch: p.Epoch})
	f.last, f.known = p.Offset, true
	return err == nil
}

// fill sends the kept publications after the last one sent and before
// offset before (0: all); f.mu is held. One that is no longer kept is
// lost to this subscriber: it would see the jump in offsets if it
// resubscribed from the last it had (recovered = false).
func (f *follower) fill(t *topics, c *gateway.Conn, topic string, before uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	defer cancel()
	entries, err := t.history.Read(ctx, topic, f.last, before)
	if err != nil {
		t.log.Warn("Topic history: a subscriber may have missed publications", "topic", topic, "conn", c.ID(), "after", f.last, "err", err)
	}
	for _, e := range entries {
		if e.Offset > f.last {
			c.SendPublication(e.Payload, e.Route, gateway.Publication{Topic: e.Topic, Offset: e.Offset, Epoch: e.Epoch}) //nolint:errcheck // a closed connection takes nothing
			f.last = e.Offset
		}
	}
}

// resumeFrom is where a subscription resumes: after Since of Epoch (empty:
// the current one), or with Now from the topic's last publication, to
// learn the position to resume from later.
type resumeFrom struct {
	Since uint64
	Epoch string
	Now   bool
}

// resume subscribes c to topic and sends it the publications it missed
// after from.Since, then the live ones, with no gap and no duplicate
// between the two: what is published while the store is read is held and
// sent after, skipping what the read sent. For a topic without history it
// only subscribes, and the recovery says recovered = false.
func (t *topics) resume(ctx context.Context, c *gateway.Conn, topic string, from resumeFrom) (delivery.Recovery, error) {
	f, fresh, err := t.subscribe(c, topic)
	if err != nil || f == nil {
		return delivery.Recovery{}, err
	}
	f.mu.Lock()
	if f.recovering {
		f.mu.Unlock()
		return delivery.Recovery{}, ErrRecovering
	}
	f.recovering = true
	f.mu.Unlock()

	var rec delivery.Recovery
	if from.Now {
		rec.Recovered = true
		rec.Position, err = t.history.Last(ctx, topic)
	} else {
		rec, err = t.history.Recover(ctx, topic, from.Since, from.Epoch)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.recovering = false
	held, overflow := f.held, f.overflow
	f.held, f.overflow = nil, false
	if err != nil {
		if fresh {
			t.unsubscribe(c, topic)
			return delivery.Recovery{}, fmt.Errorf("topic history: %w", err)
		}
		rec = delivery.Recovery{} // the subscription goes on as it was
	}
	for _, e := range rec.Entries {
		f.send(t, c, pushOf(e))
	}
	if rec.Position.Offset > f.last || !f.known && rec.Position.Epoch != "" {
		f.last, f.known = rec.Position.Offset, true // live from here
	}
	for _, p := range held {
		f.send(t, c, p)
	}
	if overflow {
		f.fill(t, c, topic, 0)
	}
	return rec, err
}
