package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"runtime"
	"strconv"
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
	if waited := time.Since(last); waited < timeout-50*time.Millisecond || waited > timeout+2*time.Second {
		t.Fatalf("closed after %v of silence, want the %v keep-alive timeout (parked or not)", waited, timeout)
	}
}

// Quiet connections hold no goroutine at all: no writer while there is
// nothing to write, and their readers parked (epoll) until the peer sends,
// the keep-alive timeout passes or a close is asked for.
func TestQuietConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 40
	srv, addr := startServer(t, Config{KeepAliveInterval: 20 * time.Millisecond, KeepAliveTimeout: time.Minute, Handler: echoHandler()})
	srv.keepAlives.quiet.Store(int64(30 * time.Millisecond))
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
	// Slack: Serve's accept loop, the keep-alive scheduler and the parker
	// may have started after before was counted.
	const slack = 3
	waitGoroutines(t, before+slack, "no goroutine per quiet connection")
	// Parked connections wake for their peers' frames, and park again.
	for i, p := range peers {
		id := "p" + strconv.Itoa(i)
		p.send(`{"type":"ping","id":"` + id + `"}` + "\n")
		expectFrame(t, p.nextSkipping(), "pong", id, `{"message":"pong"}`)
	}
	waitGoroutines(t, before+slack, "the woken connections to park again")
	// A close asked for wakes a parked connection, which says so and ends.
	var target *Conn
	for _, info := range srv.Connections() {
		if info.RemoteAddr == peers[0].nc.LocalAddr().String() {
			target = srv.Conn(info.ID)
		}
	}
	if target == nil {
		t.Fatal("peer 0's connection is not listed")
	}
	// The goroutine count allows for a few still on their way to the parker.
	testutil.Eventually(t, "peer 0's connection to park", target.w.parked.Load)
	target.Close("bye")
	if f := peers[0].nextSkipping(); f.Type != "close" || !strings.Contains(string(f.Payload), "bye") {
		t.Fatalf("got %s, want close bye", f.raw)
	}
}

func waitGoroutines(t *testing.T, atMost int, what string) {
	t.Helper()
	deadline := time.Now().Add(testutil.WaitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > atMost {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("waiting for %s: %d goroutines, want at most %d:\n%s", what, runtime.NumGoroutine(), atMost, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

// Shutdown reaches parked connections: each gets close "server shutdown".
func TestShutdownWakesParkedConnections(t *testing.T) {
	srv, addr := startServer(t, Config{KeepAliveInterval: 20 * time.Millisecond, KeepAliveTimeout: time.Minute, Handler: echoHandler()})
	srv.keepAlives.quiet.Store(int64(20 * time.Millisecond))
	peers := make([]*peer, 10)
	for i := range peers {
		peers[i] = dialPeer(t, addr)
		peers[i].send(`{"type":"ping","id":"p"}` + "\n")
		expectFrame(t, peers[i].nextSkipping(), "pong", "p", `{"message":"pong"}`)
	}
	testutil.Eventually(t, "the connections to park", func() bool { return srv.parker != nil && srv.parker.parkedCount() == len(peers) })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	for _, p := range peers {
		f := p.nextSkipping()
		if f.Type != "close" || !strings.Contains(string(f.Payload), "server shutdown") {
			t.Fatalf("got %s, want close server shutdown", f.raw)
		}
		p.nc.Close()
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// A write that fails (the peer reset the connection) ends the connection:
// the flusher that saw the failure ends the writing, so the reader's
// finish does not wait for a writer that is gone.
func TestFailedWriteEndsTheConnection(t *testing.T) {
	srv, addr := startServer(t, Config{KeepAliveInterval: time.Hour, Handler: echoHandler()})
	p := dialPeer(t, addr)
	p.send(`{"type":"ping","id":"p"}` + "\n")
	expectFrame(t, p.nextSkipping(), "pong", "p", `{"message":"pong"}`)
	c := srv.Conn(srv.Connections()[0].ID)
	p.nc.(*net.TCPConn).SetLinger(0) //nolint:errcheck // a reset, not a clean close
	p.nc.Close()
	payload := []byte(`"` + strings.Repeat("z", 1000) + `"`)
	testutil.Eventually(t, "a push to fail", func() bool {
		_, err := c.Send(payload, "")
		return err != nil
	})
	testutil.Eventually(t, "the connection to end", func() bool { return srv.ConnectionCount() == 0 })
}

// Frames that arrive together with the auth frame are served at once: the
// connection is not parked while they wait in its reader.
func TestFramesAfterAuthInOneWriteAreServed(t *testing.T) {
	sum := sha256.Sum256([]byte("tok"))
	_, addr := startServer(t, Config{KeepAliveInterval: time.Hour, Handler: echoHandler(),
		Auth: &AuthConfig{Identities: []Identity{{Name: "a", TokenSHA256: hex.EncodeToString(sum[:])}}}})
	for i := range 20 {
		p := dialPeer(t, addr)
		p.send(`{"type":"auth","id":"a","payload":{"token":"tok"}}` + "\n" + `{"type":"data","id":"d1","payload":1}` + "\n" + `{"type":"data","id":"d2","payload":2}` + "\n")
		if f := p.nextSkipping(); f.Type != "auth" {
			t.Fatalf("connection %d: got %s, want the auth answer", i, f.raw)
		}
		for _, want := range []string{"d1", "d2"} {
			f, err := p.read(2 * time.Second) // not the next keepalive or anything else: now
			if err != nil || f.Type != "data" || f.ID != want {
				t.Fatalf("connection %d: got %s, %v; want the echo of %s at once", i, f.raw, err, want)
			}
		}
		p.nc.Close()
	}
}
