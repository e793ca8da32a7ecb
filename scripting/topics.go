package scripting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// Topic bounds: what one connection can make the gateway keep.
const (
	// MaxTopicsPerConn bounds the subscriptions of one connection.
	MaxTopicsPerConn = 64
	// MaxTopicLen bounds a topic name.
	MaxTopicLen = protocol.MaxTopicLen
)

// ErrTooManyTopics is raised by gateway.subscribe for a connection that
// has MaxTopicsPerConn subscriptions already.
var ErrTooManyTopics = errors.New("scripting: too many topics for one connection")

// ValidTopic reports whether s is a topic name: dot-separated tokens of
// [A-Za-z0-9_-], none empty, at most MaxTopicLen bytes. Each token is a
// NATS subject token, so a topic maps to a subject across a cluster.
func ValidTopic(s string) bool {
	if len(s) == 0 || len(s) > MaxTopicLen {
		return false
	}
	tokenLen := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			if tokenLen == 0 {
				return false
			}
			tokenLen = 0
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-':
			tokenLen++
		default:
			return false
		}
	}
	return tokenLen > 0
}

// History keeps the last publications of some topics (delivery.History):
// their publications are numbered, and a subscriber that comes back can
// be sent what it missed.
type History interface {
	Keeps(topic string) bool
	Append(ctx context.Context, topic string, payload []byte, route string, then func(delivery.Entry)) (delivery.Entry, error)
	Read(ctx context.Context, topic string, after, before uint64) ([]delivery.Entry, error)
	Last(ctx context.Context, topic string) (delivery.Position, error)
	Recover(ctx context.Context, topic string, since uint64, epoch string) (delivery.Recovery, error)
}

// TopicPush is one publication of a topic on its way to the subscribers
// of every node. Offset, Prev and Epoch are set for a topic that keeps
// history (see delivery.Entry).
type TopicPush struct {
	Topic   string
	Payload []byte
	Route   string
	Offset  uint64
	Prev    uint64
	Epoch   string
}

// pushOf is the TopicPush of a kept publication.
func pushOf(e delivery.Entry) TopicPush {
	return TopicPush{Topic: e.Topic, Payload: e.Payload, Route: e.Route, Offset: e.Offset, Prev: e.Prev, Epoch: e.Epoch}
}

// topics is this node's subscriptions: which of its connections want the
// pushes of which topic. They live as long as the connection (OnClose drops
// them) and survive reloads, like conn.state. A subscription to a topic
// that keeps history has a follower; others have nil.
type topics struct {
	history History // nil: no topic keeps history
	log     *slog.Logger

	mu     sync.RWMutex
	byName map[string]map[*gateway.Conn]*follower
	byConn map[*gateway.Conn]map[string]struct{}
}

func newTopics(history History, log *slog.Logger) *topics {
	return &topics{history: history, log: log,
		byName: make(map[string]map[*gateway.Conn]*follower), byConn: make(map[*gateway.Conn]map[string]struct{})}
}

// keeps reports whether topic keeps history.
func (t *topics) keeps(topic string) bool { return t.history != nil && t.history.Keeps(topic) }

// subscribe adds c to topic (once: again is a no-op) and returns its
// follower when the topic keeps history. A connection that closed
// meanwhile is taken out again, so a subscription never outlives its
// connection.
func (t *topics) subscribe(c *gateway.Conn, topic string) (*follower, bool, error) {
	t.mu.Lock()
	mine := t.byConn[c]
	f, had := t.byName[topic][c]
	if _, ok := mine[topic]; !ok {
		if len(mine) >= MaxTopicsPerConn {
			t.mu.Unlock()
			return nil, false, fmt.Errorf("%w (%d)", ErrTooManyTopics, MaxTopicsPerConn)
		}
		if mine == nil {
			mine = make(map[string]struct{})
			t.byConn[c] = mine
		}
		mine[topic] = struct{}{}
		subs := t.byName[topic]
		if subs == nil {
			subs = make(map[*gateway.Conn]*follower)
			t.byName[topic] = subs
		}
		if t.keeps(topic) {
			f = &follower{}
		}
		subs[c] = f
	}
	t.mu.Unlock()
	// OnClose runs after a connection leaves the server's registry: if it
	// is gone now, its OnClose may have run before this subscription.
	if c.Server().Conn(c.ID()) != c {
		t.drop(c)
	}
	return f, !had, nil
}

// unsubscribe removes c from topic and reports whether it was there.
func (t *topics) unsubscribe(c *gateway.Conn, topic string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byConn[c][topic]; !ok {
		return false
	}
	t.remove(c, topic)
	return true
}

// drop removes every subscription of c.
func (t *topics) drop(c *gateway.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for topic := range t.byConn[c] {
		t.remove(c, topic)
	}
}

// remove takes c out of topic; t.mu is held.
func (t *topics) remove(c *gateway.Conn, topic string) {
	mine := t.byConn[c]
	delete(mine, topic)
	if len(mine) == 0 {
		delete(t.byConn, c)
	}
	subs := t.byName[topic]
	delete(subs, c)
	if len(subs) == 0 {
		delete(t.byName, topic)
	}
}

// publish pushes p to this node's subscribers of its topic and returns
// how many it was queued on. Each push is queued without blocking (a slow
// subscriber's full queue ends that subscriber, not the publish). A
// numbered publication goes through each subscriber's follower, which
// sends it once and in offset order.
func (t *topics) publish(p TopicPush) int {
	if p.Offset == 0 || t.history == nil {
		t.mu.RLock()
		defer t.mu.RUnlock()
		n := 0
		for c := range t.byName[p.Topic] {
			var err error
			if p.Offset == 0 {
				_, err = c.Send(p.Payload, p.Route)
			} else {
				_, err = c.SendPublication(p.Payload, p.Route, gateway.Publication{Topic: p.Topic, Offset: p.Offset, Epoch: p.Epoch})
			}
			if err == nil {
				n++
			}
		}
		return n
	}
	// A follower may read the store to fill a gap: not under t.mu.
	t.mu.RLock()
	subs := t.byName[p.Topic]
	followers := make([]subscriber, 0, len(subs))
	for c, f := range subs {
		followers = append(followers, subscriber{c, f})
	}
	t.mu.RUnlock()
	n := 0
	for _, s := range followers {
		if s.f == nil { // a node whose rules differ numbered it: pass it on
			if _, err := s.c.SendPublication(p.Payload, p.Route, gateway.Publication{Topic: p.Topic, Offset: p.Offset, Epoch: p.Epoch}); err == nil {
				n++
			}
		} else if s.f.take(t, s.c, p) {
			n++
		}
	}
	return n
}

type subscriber struct {
	c *gateway.Conn
	f *follower
}

// count is how many subscriptions there are in all, for tests and metrics.
func (t *topics) count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, subs := range t.byName {
		n += len(subs)
	}
	return n
}

// of lists the topics c is subscribed to, sorted.
func (t *topics) of(c *gateway.Conn) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	names := make([]string, 0, len(t.byConn[c]))
	for name := range t.byConn[c] {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
