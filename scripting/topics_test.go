package scripting

import (
	"fmt"
	"io/fs"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripts"
)

func TestTopicsWithThePubSubExample(t *testing.T) {
	src, err := fs.ReadFile(scripts.Examples(), "pubsub.lua")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, map[string]string{"pubsub.lua": string(src)}, Config{})
	a, aPush := f.client()
	b, bPush := f.client()
	pub, pubPush := f.client()
	pubID, _ := request(t, pub, "pubsub", `{"publish":"nobody.here","message":0}`)
	if pubID != `{"delivered":0}` {
		t.Fatalf("publish to a topic without subscribers: %s", pubID)
	}

	mustReply(t, a, "pubsub", `{"subscribe":"room.1"}`, `{"subscribed":true}`)
	mustReply(t, a, "pubsub", `{"subscribe":"room.1"}`, `{"subscribed":true}`) // twice is once
	mustReply(t, b, "pubsub", `{"subscribe":"room.1"}`, `{"subscribed":true}`)
	mustReply(t, b, "pubsub", `{"subscribe":"room.2"}`, `{"subscribed":true}`)
	mustReply(t, pub, "pubsub", `{"publish":"room.1","message":{"text":"hi"}}`, `{"delivered":2}`)
	for _, pushes := range []chan *protocol.Message{aPush, bPush} {
		m := <-pushes
		if m.Route != "pubsub" || !strings.Contains(string(m.Payload), `"topic":"room.1"`) || !strings.Contains(string(m.Payload), `"message":{"text":"hi"}`) {
			t.Fatalf("push %s on %q", m.Payload, m.Route)
		}
	}

	mustReply(t, a, "pubsub", `{"unsubscribe":"room.1"}`, `{"unsubscribed":true}`)
	mustReply(t, a, "pubsub", `{"unsubscribe":"room.1"}`, `{"unsubscribed":false}`)
	mustReply(t, pub, "pubsub", `{"publish":"room.1","message":2}`, `{"delivered":1}`)
	if m := <-bPush; !strings.Contains(string(m.Payload), `"message":2`) {
		t.Fatalf("push %s", m.Payload)
	}

	// Subscriptions end with their connection.
	if n := f.engine.topics.count(); n != 2 {
		t.Fatalf("%d subscriptions, want 2 (b: room.1, room.2)", n)
	}
	b.Disconnect("bye")
	testutil.Eventually(t, "b's subscriptions to go with it", func() bool { return f.engine.topics.count() == 0 })
	mustReply(t, pub, "pubsub", `{"publish":"room.1","message":3}`, `{"delivered":0}`)

	// Nothing strayed: a round trip on each connection after the last
	// publish, and no push waiting.
	mustReply(t, a, "pubsub", `{"publish":"room.9","message":0}`, `{"delivered":0}`)
	for name, pushes := range map[string]chan *protocol.Message{"a": aPush, "publisher": pubPush} {
		select {
		case m := <-pushes:
			t.Fatalf("%s got an unexpected push %s", name, m.Payload)
		default:
		}
	}
}

func TestTopicsAreBounded(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  local p = msg.payload
  if p.many then
    for i = 1, p.many do gateway.subscribe(conn.id, "t." .. i) end
    return true
  end
  if p.publish then return gateway.publish(p.publish, 1) end
  if p.other then return gateway.subscribe(p.other, "t") end
  return gateway.subscribe(conn.id, p.topic)
end
`}, Config{})
	c, _ := f.client()
	for _, topic := range []string{"", ".a", "a.", "a..b", "a*", "a>", "a b", "ä", strings.Repeat("x", MaxTopicLen+1)} {
		t.Run(fmt.Sprintf("%q", topic), func(t *testing.T) {
			mustFail(t, c, "", fmt.Sprintf(`{"topic":%q}`, topic), protocol.CodeHandlerError, "invalid topic")
			mustFail(t, c, "", fmt.Sprintf(`{"publish":%q}`, topic), protocol.CodeHandlerError, "invalid topic")
		})
	}
	mustReply(t, c, "", fmt.Sprintf(`{"topic":%q}`, strings.Repeat("x", MaxTopicLen)), `true`)
	mustReply(t, c, "", `{"topic":"Room_1.sub-2.x"}`, `true`)
	mustReply(t, c, "", `{"other":"c999"}`, `false`) // no such connection

	// Two topics so far; 62 more fit, the next one does not.
	mustReply(t, c, "", fmt.Sprintf(`{"many":%d}`, MaxTopicsPerConn-2), `true`)
	mustFail(t, c, "", `{"topic":"one.too.many"}`, protocol.CodeHandlerError, "too many topics for one connection (64)")
	if n := f.engine.topics.count(); n != MaxTopicsPerConn {
		t.Fatalf("%d subscriptions, want %d", n, MaxTopicsPerConn)
	}
}

func TestValidTopic(t *testing.T) {
	for topic, want := range map[string]bool{
		"a": true, "room.1": true, "a-b_c.D9": true, strings.Repeat("a", MaxTopicLen): true,
		"": false, ".": false, "a.": false, ".a": false, "a..b": false, "a.*": false, "a.>": false, "a/b": false,
		strings.Repeat("a", MaxTopicLen+1): false,
	} {
		if got := ValidTopic(topic); got != want {
			t.Errorf("ValidTopic(%q) = %v, want %v", topic, got, want)
		}
	}
}

// TestSlowSubscriberDoesNotHoldUpAPublish: a subscriber that never reads
// fills its queue and is closed as a slow consumer; every publish returns
// at once and the subscriber that reads keeps getting them.
func TestSlowSubscriberDoesNotHoldUpAPublish(t *testing.T) {
	f := newFixtureWith(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  if msg.payload == "sub" then return gateway.subscribe(conn.id, "news") end
  return gateway.publish("news", string.rep("x", 16000))
end`}, Config{}, gateway.Config{MaxQueueBytes: 64 << 10, WriteTimeout: time.Second})
	// The slow subscriber: it subscribes, then never reads.
	nc, err := net.DialTimeout("tcp", f.addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096) //nolint:errcheck // smaller is only quicker
	if _, err := nc.Write([]byte(`{"type":"data","payload":"sub"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	reader, pushes := f.client()
	mustReply(t, reader, "", `"sub"`, `true`)
	testutil.Eventually(t, "two subscribers", func() bool { return f.engine.topics.count() == 2 })
	publisher, _ := f.client()
	for i := 0; ; i++ {
		got, err := request(t, publisher, "", `"pub"`)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-pushes:
			if len(m.Payload) != 16002 {
				t.Fatalf("push of %d bytes", len(m.Payload))
			}
		case <-time.After(waitTimeout):
			t.Fatal("the reading subscriber got no push")
		}
		if got == "1" {
			break // the slow subscriber is gone; the publishes went on
		}
		if got != "2" || i > 10000 {
			t.Fatalf("publish %d reached %s", i, got)
		}
	}
	testutil.Eventually(t, "the slow subscriber's subscription to end", func() bool { return f.engine.topics.count() == 1 })
}
