package scripting

import (
	"errors"
	"fmt"
	"slices"
	"sync"

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

// topics is this node's subscriptions: which of its connections want the
// pushes of which topic. They live as long as the connection (OnClose drops
// them) and survive reloads, like conn.state.
type topics struct {
	mu     sync.RWMutex
	byName map[string]map[*gateway.Conn]struct{}
	byConn map[*gateway.Conn]map[string]struct{}
}

func newTopics() *topics {
	return &topics{byName: make(map[string]map[*gateway.Conn]struct{}), byConn: make(map[*gateway.Conn]map[string]struct{})}
}

// subscribe adds c to topic. A connection that closed meanwhile is taken
// out again, so a subscription never outlives its connection.
func (t *topics) subscribe(c *gateway.Conn, topic string) error {
	t.mu.Lock()
	mine := t.byConn[c]
	if _, ok := mine[topic]; !ok {
		if len(mine) >= MaxTopicsPerConn {
			t.mu.Unlock()
			return fmt.Errorf("%w (%d)", ErrTooManyTopics, MaxTopicsPerConn)
		}
		if mine == nil {
			mine = make(map[string]struct{})
			t.byConn[c] = mine
		}
		mine[topic] = struct{}{}
		subs := t.byName[topic]
		if subs == nil {
			subs = make(map[*gateway.Conn]struct{})
			t.byName[topic] = subs
		}
		subs[c] = struct{}{}
	}
	t.mu.Unlock()
	// OnClose runs after a connection leaves the server's registry: if it
	// is gone now, its OnClose may have run before this subscription.
	if c.Server().Conn(c.ID()) != c {
		t.drop(c)
	}
	return nil
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

// publish pushes payload to this node's subscribers of topic and returns
// how many it was queued on. Each push is queued without blocking (a slow
// subscriber's full queue ends that subscriber, not the publish).
func (t *topics) publish(topic string, payload []byte, route string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for c := range t.byName[topic] {
		if _, err := c.Send(payload, route); err == nil {
			n++
		}
	}
	return n
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
