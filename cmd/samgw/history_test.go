package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// TestClientFollowsTopic: the Go client's Subscribe follows a topic with
// history: cut off by the server, it reconnects, subscribes again from the
// last offset it had, and gets what was published while it was away, then
// live publications, each once and in order; OnResubscribe says
// recovered.
func TestClientFollowsTopic(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../scripts/examples/pubsub.lua")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "pubsub.lua"), string(src))
	writeFile(t, filepath.Join(dir, "kick.lua"), `function on_data(msg, conn) gateway.close(conn.id, "kicked") end`)
	addr, _, _ := startServe(t, "--scripts", dir, "--topic-history", "room.*=100")

	got := make(chan int, 100)
	gone := make(chan struct{}, 1)
	type renewal struct {
		topic string
		reply []byte
		err   error
	}
	renewed := make(chan renewal, 1)
	sub, err := gateway.NewClient(gateway.ClientConfig{Addr: addr, BackoffMin: 200 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		OnMessage: func(m *protocol.Message) {
			if m.Topic == "room.1" {
				var p struct{ Message int }
				json.Unmarshal(m.Payload, &p) //nolint:errcheck // checked by value
				got <- p.Message
			}
		},
		OnDisconnect: func(string) { gone <- struct{}{} },
		OnResubscribe: func(topic string, reply *protocol.Message, err error) {
			renewed <- renewal{topic, append([]byte(nil), reply.Payload...), err}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	if err := sub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect("done")
	pub := dialClient(t, addr)
	if _, err := sub.Subscribe(ctx, "room.1"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := sub.TopicOffset("room.1"); !ok {
		t.Fatal("no position after subscribing to a topic with history")
	}
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			if _, err := pub.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: "pubsub", Payload: fmt.Appendf(nil, `{"publish":"room.1","message":%d}`, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	expect := func(from, to int) {
		t.Helper()
		for want := from; want <= to; want++ {
			select {
			case n := <-got:
				if n != want {
					t.Fatalf("got message %d, want %d", n, want)
				}
			case <-ctx.Done():
				t.Fatalf("waiting for message %d", want)
			}
		}
	}
	publish(1, 3)
	expect(1, 3)

	// The server cuts the subscriber off; 5 are published meanwhile.
	if _, err := sub.SendMessage(protocol.Message{Type: protocol.TypeData, Route: "kick"}); err != nil {
		t.Fatal(err)
	}
	<-gone
	publish(4, 8)
	select {
	case r := <-renewed:
		var reply struct{ Recovered *bool }
		if json.Unmarshal(r.reply, &reply); r.topic != "room.1" || r.err != nil || reply.Recovered == nil || !*reply.Recovered {
			t.Fatalf("the renewal of %s answered %s, %v", r.topic, r.reply, r.err)
		}
	case <-ctx.Done():
		t.Fatal("no renewal after the reconnect")
	}
	expect(4, 8)
	publish(9, 9)
	expect(9, 9)
	select {
	case n := <-got:
		t.Fatalf("message %d came twice", n)
	default:
	}
	if off, _, _ := sub.TopicOffset("room.1"); off == 0 {
		t.Fatal("no offset after 9 publications")
	}
}

// dialClient connects a Go client (no identities) for the test.
func dialClient(t *testing.T, addr string) *gateway.Client {
	t.Helper()
	c, err := gateway.NewClient(gateway.ClientConfig{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect("done") })
	return c
}
