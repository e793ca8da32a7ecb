package gateway

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// freeLoopbackAddr returns a loopback address nothing listens on (now).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestClientFailsOverToTheNextServer: with several addresses, a client
// skips one that refuses, and after losing its server reconnects to
// another one.
func TestClientFailsOverToTheNextServer(t *testing.T) {
	down := freeLoopbackAddr(t)
	a, addrA := startServer(t, Config{})
	connects := make(chan struct{}, 4)
	c := newTestClient(t, ClientConfig{Addr: down + ", " + addrA, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		OnConnect: func() { connects <- struct{}{} }})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatalf("Connect with the first address down: %v", err)
	}
	<-connects
	if _, err := c.Request(testCtx(t), "on a"); err != nil {
		t.Fatal(err)
	}
	// A goes away; B comes up on the address that was down.
	startServerOn(t, down, Config{Handler: HandlerFunc(func(_ context.Context, c *Conn, m *protocol.Message) error {
		return c.Reply(m, []byte(`"from b"`))
	})})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	a.Shutdown(ctx)
	select {
	case <-connects:
	case <-time.After(waitTimeout):
		t.Fatal("no reconnection to the other server")
	}
	reply, err := c.Request(testCtx(t), "on b")
	if err != nil || string(reply.Payload) != `"from b"` {
		t.Fatalf("after failover: %v %v", reply, err)
	}
}

func TestClientAddrListIsValidated(t *testing.T) {
	_, err := NewClient(ClientConfig{Addr: "127.0.0.1:1,,127.0.0.1:2"})
	if err == nil || !strings.Contains(err.Error(), "Addr") {
		t.Fatalf("an empty entry: %v", err)
	}
	// Every address refusing: one error naming each.
	c := newTestClient(t, ClientConfig{Addr: freeLoopbackAddr(t) + "," + freeLoopbackAddr(t), NoReconnect: true})
	err = c.Connect(testCtx(t))
	if err == nil || strings.Count(err.Error(), "connect to 127.0.0.1:") != 2 {
		t.Fatalf("both down: %v", err)
	}
}
