package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func newTestClient(t *testing.T, cfg ClientConfig) *Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect("test over") })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestClientRequestPingAndState(t *testing.T) {
	_, addr := startServer(t, Config{})
	received := make(chan string, 16)
	c := newTestClient(t, ClientConfig{Addr: addr, OnMessage: func(m *protocol.Message) {
		received <- string(m.Type) + " " + string(m.Payload)
	}})
	if c.IsConnected() {
		t.Fatal("connected before Connect")
	}
	before := time.Now()
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !c.IsConnected() || c.LastActivity().Before(before) {
		t.Fatalf("after Connect: connected %v, last activity %v", c.IsConnected(), c.LastActivity())
	}
	reply, err := c.Request(testCtx(t), map[string]any{"name": "John", "age": 30})
	if err != nil {
		t.Fatal(err)
	}
	if reply.Type != protocol.TypeData || string(reply.Payload) != `{"age":30,"name":"John"}` {
		t.Fatalf("reply %+v", reply)
	}
	if got := <-received; got != `data {"age":30,"name":"John"}` {
		t.Fatalf("OnMessage saw %q", got)
	}
	rtt, err := c.PingWait(testCtx(t))
	if err != nil || rtt <= 0 {
		t.Fatalf("PingWait: %v, %v", rtt, err)
	}
	if got := <-received; got != `pong {"message":"pong"}` {
		t.Fatalf("OnMessage saw %q", got)
	}
	raw, err := c.Request(testCtx(t), json.RawMessage(`[1, 2, {"x": null}]`))
	if err != nil || string(raw.Payload) != `[1, 2, {"x": null}]` {
		t.Fatalf("raw request: %s, %v", raw.Payload, err)
	}
	if _, err := c.Send(json.RawMessage(`{broken`)); !errors.Is(err, protocol.ErrInvalidJSON) {
		t.Fatalf("Send of invalid raw JSON: %v", err)
	}
	if err := c.Disconnect("bye"); err != nil {
		t.Fatal(err)
	}
	if c.IsConnected() {
		t.Fatal("connected after Disconnect")
	}
	if _, err := c.Send(1); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("Send after Disconnect: %v", err)
	}
}

func TestClientIDsAreUnique(t *testing.T) {
	a, err := NewClient(ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewClient(ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 1000 {
		for _, c := range []*Client{a, b} {
			id := c.nextID()
			if seen[id] {
				t.Fatalf("id %q issued twice", id)
			}
			seen[id] = true
		}
	}
}

func TestClientErrorReply(t *testing.T) {
	_, addr := startServer(t, Config{Handler: HandlerFunc(func(context.Context, *Conn, *protocol.Message) error {
		return protocol.Errorf(protocol.CodeNoRoute, "no route here")
	})})
	c := newTestClient(t, ClientConfig{Addr: addr})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	reply, err := c.Request(testCtx(t), "x")
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeNoRoute || pe.Message != "no route here" || reply.Type != protocol.TypeError {
		t.Fatalf("Request: %v, %+v", err, reply)
	}
}

func TestClientConnectFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newTestClient(t, ClientConfig{Addr: addr})
	if err := c.Connect(testCtx(t)); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if _, err := c.Send(1); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("Send after a failed Connect: %v", err)
	}
}

// orderedRecorder is a handler that records data payloads in arrival order.
type orderedRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *orderedRecorder) HandleData(_ context.Context, c *Conn, m *protocol.Message) error {
	r.mu.Lock()
	r.got = append(r.got, string(m.Payload))
	r.mu.Unlock()
	return c.Reply(m, m.Payload)
}

func (r *orderedRecorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestClientReconnectsAfterRestartAndDeliversQueuedInOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	first, err := NewServer(Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- first.Serve(ln) }()

	connects := make(chan struct{}, 4)
	lost := make(chan string, 4)
	c := newTestClient(t, ClientConfig{
		Addr: addr, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		OnConnect:    func() { connects <- struct{}{} },
		OnDisconnect: func(reason string) { lost <- reason },
	})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	<-connects
	if _, err := c.Request(testCtx(t), "before"); err != nil {
		t.Fatal(err)
	}

	// Stop the server: the client hears "server shutdown" and starts
	// reconnecting; what it sends meanwhile is queued.
	if err := first.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	<-served
	if reason := <-lost; reason != "closed by server: server shutdown" {
		t.Fatalf("disconnect reason %q", reason)
	}
	testutil.Eventually(t, "the client to notice", func() bool { return !c.IsConnected() })
	for i := range 20 {
		if _, err := c.Send(i); err != nil {
			t.Fatalf("send %d while disconnected: %v", i, err)
		}
	}

	// Restart on the same address.
	rec := &orderedRecorder{}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewServer(Config{Logger: quietLogger(), Handler: rec})
	if err != nil {
		t.Fatal(err)
	}
	served2 := make(chan error, 1)
	go func() { served2 <- second.Serve(ln2) }()
	t.Cleanup(func() {
		second.Shutdown(context.Background())
		<-served2
	})
	<-connects
	testutil.Eventually(t, "the queued frames to arrive", func() bool { return len(rec.snapshot()) >= 20 })
	got := rec.snapshot()
	for i := range 20 {
		if got[i] != fmt.Sprint(i) {
			t.Fatalf("queued frames arrived as %v, want 0..19 in order", got)
		}
	}
	if len(got) != 20 {
		t.Fatalf("%d frames arrived, want 20 exactly once", len(got))
	}
	if reply, err := c.Request(testCtx(t), "after"); err != nil || string(reply.Payload) != `"after"` {
		t.Fatalf("request after reconnecting: %v %v", reply, err)
	}
}

func TestClientQueueIsBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	lost := make(chan string, 1)
	c := newTestClient(t, ClientConfig{Addr: ln.Addr().String(), QueueSize: 3, BackoffMin: time.Hour,
		OnDisconnect: func(r string) { lost <- r }})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown(testCtx(t))
	<-served
	<-lost
	for i := range 3 {
		if _, err := c.Send(i); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if _, err := c.Send(3); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("fourth send: %v, want ErrQueueFull", err)
	}
}

func TestClientDetectsSilentServer(t *testing.T) {
	// A server that accepts and then says nothing at all.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- nc
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for nc := range accepted {
			nc.Close()
		}
	})
	lost := make(chan string, 4)
	const timeout = 300 * time.Millisecond
	c := newTestClient(t, ClientConfig{Addr: ln.Addr().String(), KeepAliveTimeout: timeout, KeepAliveInterval: time.Hour,
		LingerTimeout: 50 * time.Millisecond, BackoffMin: time.Hour, OnDisconnect: func(r string) { lost <- r }})
	start := time.Now()
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if reason := <-lost; reason != ReasonKeepAliveTimeout {
		t.Fatalf("reason %q, want keepalive timeout", reason)
	}
	if elapsed := time.Since(start); elapsed < timeout || elapsed > timeout+2*time.Second {
		t.Fatalf("declared dead after %v, want about %v", elapsed, timeout)
	}
}

func TestClientSendsKeepAlives(t *testing.T) {
	// The server's timeout is shorter than the test: only the client's
	// keepalives keep the connection open.
	const timeout = 300 * time.Millisecond
	srv, addr := startServer(t, Config{KeepAliveTimeout: timeout, KeepAliveInterval: time.Hour})
	alive := make(chan struct{}, 64)
	lost := make(chan string, 1)
	c := newTestClient(t, ClientConfig{Addr: addr, KeepAliveInterval: timeout / 4,
		OnMessage: func(m *protocol.Message) {
			if m.Type == protocol.TypeKeepAlive && string(m.Payload) == `{"status":"alive"}` {
				alive <- struct{}{}
			}
		},
		OnDisconnect: func(r string) { lost <- r }})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for range 12 { // three timeouts' worth of answered keepalives
		select {
		case <-alive:
		case r := <-lost:
			t.Fatalf("connection lost: %s", r)
		}
	}
	if srv.ConnectionCount() != 1 || !c.IsConnected() {
		t.Fatal("the keepalives did not keep the connection")
	}
}

func TestClientRequestInFlightFailsOnLoss(t *testing.T) {
	// The handler never answers and the server is then stopped: the
	// request must fail rather than wait for its context.
	block := make(chan struct{})
	srv, addr := startServer(t, Config{Handler: HandlerFunc(func(ctx context.Context, c *Conn, m *protocol.Message) error {
		<-block
		return nil
	})})
	c := newTestClient(t, ClientConfig{Addr: addr, BackoffMin: time.Hour})
	if err := c.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Request(testCtx(t), "stuck")
		done <- err
	}()
	testutil.Eventually(t, "the request to reach the handler", func() bool {
		infos := srv.Connections()
		return len(infos) == 1 && infos[0].FramesIn == 1
	})
	srv.Conn(srv.Connections()[0].ID).w.abort(CloseCause{Kind: CloseInternal})
	close(block)
	if err := <-done; !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("in-flight request: %v, want ErrConnectionLost", err)
	}
}

// TestConnectRetriesARefusedFirstDial: with ConnectRetry, Connect waits for
// a server that is still starting; without it, it fails at once.
func TestConnectRetriesARefusedFirstDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	refused := make(chan struct{}, 100)
	var d net.Dialer
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, a)
		if err != nil {
			refused <- struct{}{}
		}
		return nc, err
	}
	once := newTestClient(t, ClientConfig{Addr: addr, Dial: dial})
	if err := once.Connect(t.Context()); err == nil {
		t.Fatal("Connect without ConnectRetry succeeded against nothing")
	}
	<-refused

	c := newTestClient(t, ClientConfig{Addr: addr, Dial: dial, ConnectRetry: 10 * time.Second})
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(context.Background()) }()
	<-refused // the first dial of this Connect was refused; now the server starts
	startServerOn(t, addr, Config{})
	select {
	case err := <-connected:
		if err != nil {
			t.Fatalf("Connect with ConnectRetry: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Connect did not return")
	}
	if _, err := c.PingWait(t.Context()); err != nil {
		t.Fatal(err)
	}
}
