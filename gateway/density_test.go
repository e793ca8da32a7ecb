package gateway

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

func echoHandler() Handler {
	return HandlerFunc(func(_ context.Context, c *Conn, m *protocol.Message) error { return c.Reply(m, m.Payload) })
}

// A quiet connection's reader moves to a fresh goroutine, and the
// connection is served exactly as before: frames answered, the keep-alive
// timeout counted from the last frame, not from the move.
func TestQuietReaderMovesAndServesOn(t *testing.T) {
	const timeout = 700 * time.Millisecond
	srv, addr := startServer(t, Config{KeepAliveInterval: 10 * time.Millisecond, KeepAliveTimeout: timeout, Handler: echoHandler()})
	srv.keepAlives.quiet.Store(int64(30 * time.Millisecond))
	p := dialPeer(t, addr)
	p.send(`{"type":"ping","id":"p1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "pong", "p1", `{"message":"pong"}`)
	testutil.Eventually(t, "the quiet reader to move", func() bool { return srv.keepAlives.reparked.Load() >= 1 })
	for _, id := range []string{"d1", "d2", "d3"} {
		p.send(`{"type":"data","id":"` + id + `","payload":[1,2]}` + "\n")
		expectFrame(t, p.nextSkipping(), "data", id, `[1,2]`)
		moved := srv.keepAlives.reparked.Load()
		testutil.Eventually(t, "the reader to move again after frame "+id, func() bool { return srv.keepAlives.reparked.Load() > moved })
	}
	last := time.Now()
	// Now silent: the keep-alive timeout still closes the connection, on
	// time, though its reader moved meanwhile.
	for {
		f := p.next()
		if f.Type == "keepalive" {
			continue
		}
		if f.Type != "close" || !strings.Contains(string(f.Payload), "keepalive timeout") {
			t.Fatalf("got %s, want close keepalive timeout", f.raw)
		}
		break
	}
	if waited := time.Since(last); waited < timeout-50*time.Millisecond {
		t.Fatalf("closed after %v of silence, before the %v keep-alive timeout", waited, timeout)
	}
}

// A quiet connection holds one goroutine (its reader) and no writer: the
// flusher runs only while there is something to write.
func TestQuietConnectionsHoldOneGoroutineEach(t *testing.T) {
	const n = 40
	_, addr := startServer(t, Config{KeepAliveInterval: time.Hour, Handler: echoHandler()})
	before := runtime.NumGoroutine()
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = dialPeer(t, addr)
		peers[i].send(`{"type":"data","id":"x","payload":"` + strings.Repeat("y", 5000) + `"}` + "\n")
	}
	for _, p := range peers {
		if f := p.nextSkipping(); f.Type != "data" {
			t.Fatalf("got %s, want the echo", f.raw)
		}
	}
	// Slack: Serve's accept loop and the keep-alive scheduler may have
	// started after before was counted.
	const slack = 2
	deadline := time.Now().Add(testutil.WaitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > before+n+slack {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines for %d quiet connections (%d before):\n%s", runtime.NumGoroutine(), n, before, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}
