package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultTopicRoute is the route Subscribe speaks to: the one of the
// shipped scripts/examples/pubsub.lua.
const DefaultTopicRoute = "pubsub"

// ErrNotSubscribed is returned by Subscribe when the handler answered
// without "subscribed": true.
var ErrNotSubscribed = errors.New("gateway: not subscribed")

// topicRequest is what Subscribe and Unsubscribe send to the topic route.
type topicRequest struct {
	Subscribe   string  `json:"subscribe,omitempty"`
	Unsubscribe string  `json:"unsubscribe,omitempty"`
	Since       *uint64 `json:"since,omitempty"`
	Epoch       string  `json:"epoch,omitempty"`
}

// topicReply is the topic route's answer to a subscribe.
type topicReply struct {
	Subscribed bool   `json:"subscribed"`
	Recovered  *bool  `json:"recovered"`
	Offset     uint64 `json:"offset"`
	Epoch      string `json:"epoch"`
}

// position is where a subscriber stands in a topic's history: the last
// offset it has, of which epoch.
type position struct {
	offset uint64
	epoch  string
}

// followed is the client's side of its topic subscriptions: the topics it
// subscribed to with Subscribe, the last publication it saw of each, and
// the renewals in flight after a reconnect.
type followed struct {
	mu       sync.Mutex
	topics   map[string]*position
	renewing map[string]string // request id → topic
}

// request is the subscribe request for topic: from the last position seen,
// if any.
func (f *followed) request(topic string) []byte {
	req := topicRequest{Subscribe: topic}
	f.mu.Lock()
	if p := f.topics[topic]; p != nil && p.epoch != "" {
		since := p.offset
		req.Since, req.Epoch = &since, p.epoch
	}
	f.mu.Unlock()
	b, _ := json.Marshal(req)
	return b
}

// answered records a subscribe's answer: the topic is followed, from the
// position the answer gives unless it has seen further in that epoch.
func (f *followed) answered(topic string, payload []byte) (topicReply, error) {
	var r topicReply
	if err := json.Unmarshal(payload, &r); err != nil || !r.Subscribed {
		return r, fmt.Errorf("subscribe %s: %w: %s", topic, ErrNotSubscribed, payload)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.topics[topic]
	if p == nil {
		p = &position{}
		f.topics[topic] = p
	}
	if r.Epoch != "" && (r.Epoch != p.epoch || r.Offset > p.offset) {
		p.offset, p.epoch = r.Offset, r.Epoch
	}
	return r, nil
}

// seen records a publication and reports whether it was seen before (an
// offset at or below the last one of the same epoch).
func (f *followed) seen(m *protocol.Message) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.topics[m.Topic]
	if p == nil {
		return false // not followed: passed on as it is
	}
	if p.epoch == m.Epoch && m.Offset <= p.offset {
		return true
	}
	p.offset, p.epoch = m.Offset, m.Epoch
	return false
}

// Subscribe subscribes to topic through the topic route (ClientConfig.
// TopicRoute): it sends {"subscribe": topic}, with "since" and "epoch"
// when the client has seen publications of it, and returns the answer.
// The client then follows the topic: it remembers the offset of each
// publication it receives, drops one it has had already, and after every
// reconnect subscribes again from the last one, so a topic with history
// on the server (--topic-history) delivers what was missed meanwhile;
// OnResubscribe gets those answers. The route's handler must speak
// pubsub.lua's requests.
func (c *Client) Subscribe(ctx context.Context, topic string) (*protocol.Message, error) {
	reply, err := c.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: c.cfg.TopicRoute, Payload: c.topics.request(topic)})
	if err != nil {
		return reply, err
	}
	_, err = c.topics.answered(topic, reply.Payload)
	return reply, err
}

// Unsubscribe leaves topic ({"unsubscribe": topic} on the topic route) and
// stops following it.
func (c *Client) Unsubscribe(ctx context.Context, topic string) (*protocol.Message, error) {
	c.topics.mu.Lock()
	delete(c.topics.topics, topic)
	c.topics.mu.Unlock()
	b, _ := json.Marshal(topicRequest{Unsubscribe: topic})
	return c.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: c.cfg.TopicRoute, Payload: b})
}

// TopicOffset returns the offset and epoch of the last publication of
// topic the client has (or the position its subscribe was answered with);
// ok is false for a topic it does not follow or that keeps no history.
func (c *Client) TopicOffset(topic string) (offset uint64, epoch string, ok bool) {
	c.topics.mu.Lock()
	defer c.topics.mu.Unlock()
	p := c.topics.topics[topic]
	if p == nil || p.epoch == "" {
		return 0, "", false
	}
	return p.offset, p.epoch, true
}

// renewSubscriptions queues on w, after its auth frame, a subscribe for
// every followed topic from its last position; c.mu is held.
func (c *Client) renewSubscriptions(w *wire) {
	f := &c.topics
	f.mu.Lock()
	topics := make([]string, 0, len(f.topics))
	for topic := range f.topics {
		topics = append(topics, topic)
	}
	clear(f.renewing) // the last connection's are never answered
	f.mu.Unlock()
	for _, topic := range topics {
		m := protocol.Message{Type: protocol.TypeData, ID: c.nextID(), Route: c.cfg.TopicRoute, Payload: f.request(topic)}
		if c.cfg.SignKey != nil {
			c.sign(&m)
		}
		f.mu.Lock()
		f.renewing[m.ID] = topic
		f.mu.Unlock()
		w.enqueueMessage(&m) //nolint:errcheck // a new wire accepts
	}
}

// renewed handles the answer to a renewal, if m is one.
func (c *Client) renewed(m *protocol.Message) bool {
	if m.ID == "" {
		return false
	}
	f := &c.topics
	f.mu.Lock()
	topic, ok := f.renewing[m.ID]
	delete(f.renewing, m.ID)
	f.mu.Unlock()
	if !ok {
		return false
	}
	var err error
	if m.Type == protocol.TypeError {
		err = fmt.Errorf("subscribe %s again: %w", topic, errorFromFrame(m))
	} else {
		_, err = f.answered(topic, m.Payload)
	}
	if err != nil {
		c.log.Warn("Subscribing again after a reconnect failed", "topic", topic, "error", err)
	}
	if c.cfg.OnResubscribe != nil {
		c.cfg.OnResubscribe(topic, m, err)
	}
	return true
}
