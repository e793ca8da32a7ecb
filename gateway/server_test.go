package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestMessageTypes(t *testing.T) {
	_, addr := startServer(t, Config{})
	p := dialPeer(t, addr)

	p.send(`{"type":"data","payload":{"name":"John","age":30,"email":"john@example.com"},"timestamp":1,"id":"d1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "data", "d1", `{"name":"John","age":30,"email":"john@example.com"}`)

	p.send(`{"type":"data","id":"d2"}` + "\n") // no payload: none in the echo either
	f := p.nextSkipping()
	expectFrame(t, f, "data", "d2", "")
	if f.Payload != nil || strings.Contains(f.raw, "payload") {
		t.Fatalf("echo of a message without payload has one: %s", f.raw)
	}

	p.send(`{"type":"data","route":"chat","payload":[1,"x",null],"id":"d3"}` + "\n")
	f = p.nextSkipping()
	expectFrame(t, f, "data", "d3", `[1,"x",null]`)
	if f.Route != "chat" {
		t.Fatalf("echo lost the route: %s", f.raw)
	}

	p.send(`{"type":"ping","payload":{"message":"ping"},"id":"p1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "pong", "p1", `{"message":"pong"}`)

	p.send(`{"type":"keepalive","payload":{"message":"keepalive"},"id":"k1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "keepalive", "k1", `{"status":"alive"}`)

	// pong and error from a client need no answer: the next frame answers
	// the ping after them.
	p.send(`{"type":"pong","id":"x"}` + "\n" + `{"type":"error","payload":{"code":"c","message":"m"}}` + "\n" + `{"type":"ping","id":"p2"}` + "\n")
	expectFrame(t, p.nextSkipping(), "pong", "p2", `{"message":"pong"}`)

	p.send(`{"type":"close","payload":{"reason":"done"}}` + "\n")
	expectFrame(t, p.nextSkipping(), "close", "", `{"message":"Connection closed by client"}`)
	p.expectEOF()
}

func TestPeriodicKeepAlive(t *testing.T) {
	_, addr := startServer(t, Config{KeepAliveInterval: 50 * time.Millisecond})
	p := dialPeer(t, addr)
	for range 2 {
		f := p.next()
		expectFrame(t, f, "keepalive", "", `{"message":"keepalive"}`)
	}
}

func TestFramesSplitAndBatched(t *testing.T) {
	_, addr := startServer(t, Config{})
	p := dialPeer(t, addr)
	p.nc.(*net.TCPConn).SetNoDelay(true)

	// Byte by byte, each byte its own write.
	msg := `{"type":"data","payload":{"k":"v"},"id":"split"}` + "\r\n"
	for i := range len(msg) {
		p.send(msg[i : i+1])
	}
	expectFrame(t, p.nextSkipping(), "data", "split", `{"k":"v"}`)

	// Many frames in one write, empty lines between them.
	var batch strings.Builder
	for i := range 100 {
		fmt.Fprintf(&batch, `{"type":"data","payload":%d,"id":"b%d"}`+"\n\n", i, i)
	}
	p.send(batch.String())
	for i := range 100 {
		expectFrame(t, p.nextSkipping(), "data", fmt.Sprintf("b%d", i), fmt.Sprint(i))
	}
}

func TestBadInputKeepsConnection(t *testing.T) {
	_, addr := startServer(t, Config{})
	p := dialPeer(t, addr)
	tests := []struct {
		name  string
		frame string
		code  protocol.Code
		id    string
	}{
		{"invalid JSON", `{"type":"data",`, protocol.CodeInvalidJSON, ""},
		{"not JSON at all", `hello there`, protocol.CodeInvalidJSON, ""},
		{"invalid UTF-8", "{\"type\":\"data\",\"payload\":\"\xc3\x28\"}", protocol.CodeInvalidJSON, ""},
		{"NUL byte", "{\"type\":\"data\"}\x00", protocol.CodeInvalidJSON, ""},
		{"not an object", `[1,2,3]`, protocol.CodeInvalidMessage, ""},
		{"type missing", `{"payload":1,"id":"m1"}`, protocol.CodeInvalidMessage, "m1"},
		{"type not a string", `{"type":7,"id":"m2"}`, protocol.CodeInvalidMessage, "m2"},
		{"too deep", `{"type":"data","id":"m3","payload":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, protocol.CodeInvalidMessage, "m3"},
		{"unknown type", `{"type":"teleport","id":"u1"}`, protocol.CodeUnknownType, "u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.t = t
			p.send(tt.frame + "\n")
			expectError(t, p.nextSkipping(), tt.code, tt.id)
			p.send(`{"type":"ping","id":"after"}` + "\n")
			expectFrame(t, p.nextSkipping(), "pong", "after", "")
		})
	}
}

func TestOversizedFrameClosesAfterError(t *testing.T) {
	_, addr := startServer(t, Config{MaxFrameSize: 1024})
	p := dialPeer(t, addr)
	p.send(`{"type":"data","payload":"` + strings.Repeat("x", 1000) + `","id":"ok"}` + "\n") // 1032 bytes
	expectError(t, p.nextSkipping(), protocol.CodeFrameTooLarge, "")
	expectFrame(t, p.nextSkipping(), "close", "", `{"reason":"frame too large"}`)
	p.expectEOF()

	// Exactly at the limit is accepted.
	q := dialPeer(t, addr)
	payload := strings.Repeat("y", 1024-len(`{"type":"data","payload":"","id":"max"}`))
	exact := `{"type":"data","payload":"` + payload + `","id":"max"}`
	if len(exact) != 1024 {
		t.Fatalf("test frame is %d bytes", len(exact))
	}
	q.send(exact + "\r\n")
	expectFrame(t, q.nextSkipping(), "data", "max", `"`+payload+`"`)
}

func TestEndlessLineIsCutOff(t *testing.T) {
	const limit = 64 << 10
	_, addr := startServer(t, Config{MaxFrameSize: limit, LingerTimeout: 200 * time.Millisecond})
	p := dialPeer(t, addr)
	chunk := []byte(strings.Repeat("z", 64<<10))
	written := 0
	var err error
	for written < 100<<20 {
		p.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
		var n int
		n, err = p.nc.Write(chunk)
		written += n
		if err != nil {
			break
		}
	}
	if err == nil {
		t.Fatalf("the server accepted %d bytes without a newline", written)
	}
	// What was written is the limit, the bounded drain and the kernel's
	// socket buffers; far from the 100 MB offered.
	if written > 40<<20 {
		t.Fatalf("the server took %d MB before closing", written>>20)
	}
}

func TestKeepAliveTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	_, addr := startServer(t, Config{KeepAliveTimeout: timeout, KeepAliveInterval: time.Hour})
	start := time.Now()
	p := dialPeer(t, addr)
	f := p.next()
	elapsed := time.Since(start)
	expectFrame(t, f, "close", "", `{"reason":"keepalive timeout"}`)
	p.expectEOF()
	if elapsed < timeout {
		t.Fatalf("closed after %v, before the %v timeout", elapsed, timeout)
	}
	if elapsed > timeout+2*time.Second {
		t.Fatalf("closed after %v, long past the %v timeout", elapsed, timeout)
	}
}

func TestHalfFrameThenSilenceTimesOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	_, addr := startServer(t, Config{KeepAliveTimeout: timeout, KeepAliveInterval: time.Hour})
	p := dialPeer(t, addr)
	p.send(`{"type":"ping","id":"p"}` + "\n")
	expectFrame(t, p.next(), "pong", "p", "")
	start := time.Now()
	// Trickle a frame that never ends: bytes keep coming, frames do not.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		p.nc.Write([]byte(`{"type":"data","payload":"`))
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := p.nc.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	f := p.next()
	close(stop)
	<-done
	expectFrame(t, f, "close", "", `{"reason":"keepalive timeout"}`)
	if elapsed := time.Since(start); elapsed < timeout-50*time.Millisecond || elapsed > timeout+2*time.Second {
		t.Fatalf("closed after %v, want about %v", elapsed, timeout)
	}
}

func TestKeepAlivesKeepConnectionOpen(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv, addr := startServer(t, Config{KeepAliveTimeout: timeout, KeepAliveInterval: time.Hour})
	p := dialPeer(t, addr)
	tick := time.NewTicker(timeout / 3)
	defer tick.Stop()
	end := time.Now().Add(4 * timeout)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		p.send(fmt.Sprintf(`{"type":"keepalive","id":"k%d"}`+"\n", i))
		expectFrame(t, p.next(), "keepalive", fmt.Sprintf("k%d", i), `{"status":"alive"}`)
	}
	if n := srv.ConnectionCount(); n != 1 {
		t.Fatalf("%d connections after keep-alives, want 1", n)
	}
}

// TestFrequentFramesKeepConnectionOpen sends frames closer together than
// the read deadline's slack (a sixteenth of the timeout), so the deadline
// is set from an earlier frame and fires before the timeout since the last
// one: the server must set it again, not close; once the frames stop, it
// closes no earlier than the timeout after the last one.
func TestFrequentFramesKeepConnectionOpen(t *testing.T) {
	const timeout = 320 * time.Millisecond
	srv, addr := startServer(t, Config{KeepAliveTimeout: timeout, KeepAliveInterval: time.Hour})
	p := dialPeer(t, addr)
	tick := time.NewTicker(timeout / 64)
	defer tick.Stop()
	end := time.Now().Add(3 * timeout)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		p.send(fmt.Sprintf(`{"type":"ping","id":"p%d"}`+"\n", i))
		expectFrame(t, p.next(), "pong", fmt.Sprintf("p%d", i), "")
	}
	if n := srv.ConnectionCount(); n != 1 {
		t.Fatalf("%d connections while frames kept coming, want 1", n)
	}
	// One frame, then another within the slack: the deadline stays the
	// first one's and fires a slack early; the close must still wait for
	// the timeout since the second.
	p.send(`{"type":"ping","id":"a"}` + "\n")
	expectFrame(t, p.next(), "pong", "a", "")
	gap := time.NewTimer(timeout / 32)
	<-gap.C
	last := time.Now()
	p.send(`{"type":"ping","id":"b"}` + "\n")
	expectFrame(t, p.next(), "pong", "b", "")
	expectFrame(t, p.next(), "close", "", `{"reason":"keepalive timeout"}`)
	if quiet := time.Since(last); quiet < timeout {
		t.Fatalf("closed %v after the last frame, before the %v timeout", quiet, timeout)
	}
}

func TestSlowConsumerClosedOthersServed(t *testing.T) {
	srv, addr := startServer(t, Config{MaxFrameSize: 16 << 10, MaxQueueBytes: 1, WriteTimeout: time.Second})
	slow := dialPeer(t, addr)
	fast := dialPeer(t, addr)
	testutil.Eventually(t, "both connections registered", func() bool { return srv.ConnectionCount() == 2 })

	// The slow peer never reads: its replies fill the socket buffers, then
	// the server's queue.
	big := `{"type":"data","payload":"` + strings.Repeat("s", 15<<10) + `"}` + "\n"
	writeErr := make(chan error, 1)
	go func() {
		for i := 0; i < 4000; i++ {
			slow.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
			if _, err := io.WriteString(slow.nc, big); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	for i := 0; srv.ConnectionCount() == 2; i++ {
		fast.send(fmt.Sprintf(`{"type":"data","payload":%d,"id":"f%d"}`+"\n", i, i))
		expectFrame(t, fast.nextSkipping(), "data", fmt.Sprintf("f%d", i), fmt.Sprint(i))
		if i > 100000 {
			t.Fatal("the slow consumer was never closed")
		}
	}
	if err := <-writeErr; err == nil {
		t.Fatal("the slow consumer could write 60 MB without being closed")
	}
	fast.send(`{"type":"ping","id":"still"}` + "\n")
	expectFrame(t, fast.nextSkipping(), "pong", "still", "")
}

func TestMaxConns(t *testing.T) {
	srv, addr := startServer(t, Config{MaxConns: 2})
	a, b := dialPeer(t, addr), dialPeer(t, addr)
	testutil.Eventually(t, "two connections", func() bool { return srv.ConnectionCount() == 2 })
	c := dialPeer(t, addr)
	expectFrame(t, c.next(), "close", "", `{"reason":"server full"}`)
	c.expectEOF()
	for _, p := range []*peer{a, b} {
		p.send(`{"type":"ping","id":"ok"}` + "\n")
		expectFrame(t, p.nextSkipping(), "pong", "ok", "")
	}
	// A freed slot is usable again.
	a.nc.Close()
	testutil.Eventually(t, "the closed connection to leave", func() bool { return srv.ConnectionCount() == 1 })
	d := dialPeer(t, addr)
	d.send(`{"type":"ping","id":"d"}` + "\n")
	expectFrame(t, d.nextSkipping(), "pong", "d", "")
}

func TestGracefulShutdownAnswersThenCloses(t *testing.T) {
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

	const clients, frames = 5, 100
	peers := make([]*peer, clients)
	for i := range peers {
		peers[i] = dialPeer(t, ln.Addr().String())
		var batch strings.Builder
		for j := range frames {
			fmt.Fprintf(&batch, `{"type":"data","payload":%d,"id":"%d"}`+"\n", j, j)
		}
		peers[i].send(batch.String())
	}
	testutil.Eventually(t, "every frame received", func() bool {
		infos := srv.Connections()
		if len(infos) != clients {
			return false
		}
		for _, in := range infos {
			if in.FramesIn != frames {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	for _, p := range peers {
		for j := range frames {
			expectFrame(t, p.nextSkipping(), "data", fmt.Sprint(j), fmt.Sprint(j))
		}
		expectFrame(t, p.nextSkipping(), "close", "", `{"reason":"server shutdown"}`)
		p.expectEOF()
		p.nc.Close()
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestShutdownTimeoutForcesClose(t *testing.T) {
	// A peer that never reads and never hangs up cannot hold shutdown past
	// its context.
	srv, err := NewServer(Config{Logger: quietLogger(), MaxFrameSize: 16 << 10, WriteTimeout: time.Hour, LingerTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	p := dialPeer(t, ln.Addr().String())
	p.send(`{"type":"ping","id":"x"}` + "\n")
	expectFrame(t, p.next(), "pong", "x", "")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want deadline exceeded", err)
	}
	<-served
	testutil.Eventually(t, "the aborted connection to leave", func() bool { return srv.ConnectionCount() == 0 })
	if n := srv.ConnectionCount(); n != 0 {
		t.Fatalf("%d connections left after a forced shutdown", n)
	}
}

func TestConcurrentClientsGetTheirOwnEchoesInOrder(t *testing.T) {
	_, addr := startServer(t, Config{})
	const clients, frames = 200, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.DialTimeout("tcp", addr, waitTimeout)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(waitTimeout))
			var batch strings.Builder
			for j := range frames {
				fmt.Fprintf(&batch, `{"type":"data","payload":{"c":%d,"n":%d},"id":"%d-%d"}`+"\n", i, j, i, j)
			}
			if _, err := io.WriteString(nc, batch.String()); err != nil {
				errs <- err
				return
			}
			r := protocol.NewReader(nc, protocol.Limits{})
			for j := 0; j < frames; {
				line, err := r.ReadFrame()
				if err != nil {
					errs <- fmt.Errorf("client %d after %d echoes: %w", i, j, err)
					return
				}
				var m protocol.Message
				if err := protocol.Decode(line, &m, protocol.Limits{}); err != nil {
					errs <- err
					return
				}
				if m.Type == protocol.TypeKeepAlive {
					continue
				}
				want := fmt.Sprintf(`{"c":%d,"n":%d}`, i, j)
				if m.ID != fmt.Sprintf("%d-%d", i, j) || string(m.Payload) != want {
					errs <- fmt.Errorf("client %d echo %d: got %s", i, j, line)
					return
				}
				j++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestConnectionsRegistry(t *testing.T) {
	srv, addr := startServer(t, Config{})
	before := time.Now()
	p := dialPeer(t, addr)
	p.send(`{"type":"data","payload":"abc","id":"1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "data", "1", `"abc"`)
	testutil.Eventually(t, "one connection", func() bool { return srv.ConnectionCount() == 1 })
	// The writer counts its bytes once the write has returned, which can
	// be after the peer has read them.
	testutil.Eventually(t, "the reply's bytes counted", func() bool { return srv.Connections()[0].BytesOut > 0 })
	infos := srv.Connections()
	in := infos[0]
	if in.ID == "" || in.RemoteAddr != p.nc.LocalAddr().String() || in.ConnectedAt.Before(before) ||
		in.LastActivity.Before(in.ConnectedAt) || in.FramesIn != 1 || in.FramesOut != 1 || in.BytesIn == 0 || in.BytesOut == 0 {
		t.Fatalf("connection info %+v", in)
	}
	if c := srv.Conn(in.ID); c == nil || c.ID() != in.ID || c.RemoteAddr() != in.RemoteAddr {
		t.Fatalf("Conn(%q) = %v", in.ID, c)
	}
	p.nc.Close()
	testutil.Eventually(t, "the connection to leave the registry", func() bool { return srv.ConnectionCount() == 0 })
	if srv.Conn(in.ID) != nil {
		t.Fatal("a closed connection is still registered")
	}
}

// recordingHandler replies through a function and records hook calls.
type recordingHandler struct {
	data      func(ctx context.Context, c *Conn, m *protocol.Message) error
	connect   func(c *Conn) error
	mu        sync.Mutex
	connected []string
	closed    map[string]string
	closedCh  chan string
}

func (h *recordingHandler) HandleData(ctx context.Context, c *Conn, m *protocol.Message) error {
	return h.data(ctx, c, m)
}

func (h *recordingHandler) OnConnect(_ context.Context, c *Conn) error {
	h.mu.Lock()
	h.connected = append(h.connected, c.ID())
	h.mu.Unlock()
	if h.connect != nil {
		return h.connect(c)
	}
	return nil
}

func (h *recordingHandler) OnClose(c *Conn, reason string) {
	h.mu.Lock()
	h.closed[c.ID()] = reason
	h.mu.Unlock()
	h.closedCh <- c.ID()
}

func TestHandlerErrorsPanicsAndHooks(t *testing.T) {
	h := &recordingHandler{closed: map[string]string{}, closedCh: make(chan string, 4)}
	h.data = func(_ context.Context, c *Conn, m *protocol.Message) error {
		switch string(m.Payload) {
		case `"fail"`:
			return errors.New("database password is hunter2")
		case `"refuse"`:
			return protocol.Errorf(protocol.CodeNoRoute, "no handler for route %q", "x")
		case `"panic"`:
			panic("boom")
		case `"twice"`:
			c.Reply(m, []byte(`1`))
			return c.Reply(m, []byte(`2`))
		case `"quiet"`:
			return nil
		}
		return c.Reply(m, m.Payload)
	}
	h.connect = func(c *Conn) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.connected) == 2 {
			return protocol.Errorf(protocol.CodeHandlerError, "not you")
		}
		return nil
	}
	srv, addr := startServer(t, Config{Handler: h})
	p := dialPeer(t, addr)

	p.send(`{"type":"data","payload":"fail","id":"e1"}` + "\n")
	f := p.nextSkipping()
	expectError(t, f, protocol.CodeHandlerError, "e1")
	if strings.Contains(f.raw, "hunter2") {
		t.Fatalf("a Go error leaked to the peer: %s", f.raw)
	}
	p.send(`{"type":"data","payload":"refuse","id":"e2"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeNoRoute, "e2")
	p.send(`{"type":"data","payload":"panic","id":"e3"}` + "\n")
	expectError(t, p.nextSkipping(), protocol.CodeHandlerError, "e3")
	p.send(`{"type":"data","payload":"quiet","id":"q"}` + "\n" + `{"type":"data","payload":"twice","id":"t"}` + "\n")
	expectFrame(t, p.nextSkipping(), "data", "t", "1")
	expectFrame(t, p.nextSkipping(), "data", "t", "2")

	// The second connection is rejected by OnConnect.
	q := dialPeer(t, addr)
	expectFrame(t, q.nextSkipping(), "close", "", `{"reason":"not you"}`)
	q.expectEOF()
	rejected := <-h.closedCh

	p.send(`{"type":"close"}` + "\n")
	expectFrame(t, p.nextSkipping(), "close", "", "")
	p.expectEOF()
	first := <-h.closedCh
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed[first] != ReasonClosedByClient || !strings.HasPrefix(h.closed[rejected], "rejected") {
		t.Fatalf("OnClose reasons %v", h.closed)
	}
	if srv.ConnectionCount() != 0 {
		t.Fatalf("connections left: %d", srv.ConnectionCount())
	}
}

func TestPushesBetweenConnections(t *testing.T) {
	srv, addr := startServer(t, Config{Handler: HandlerFunc(func(_ context.Context, c *Conn, m *protocol.Message) error {
		// Relay: payload {"to": id, "body": ...} is pushed to "to".
		var relay struct {
			To   string          `json:"to"`
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(m.Payload, &relay); err != nil {
			return err
		}
		target := c.srv.Conn(relay.To)
		if target == nil {
			return protocol.Errorf(protocol.CodeHandlerError, "no such connection")
		}
		_, err := target.Send(relay.Body, "relay")
		if err != nil {
			return err
		}
		return c.Reply(m, []byte(`"sent"`))
	})})
	a := dialPeer(t, addr)
	b := dialPeer(t, addr)
	testutil.Eventually(t, "two connections open", func() bool { return len(srv.Connections()) == 2 })
	var bID string
	for _, in := range srv.Connections() {
		if in.RemoteAddr == b.nc.LocalAddr().String() {
			bID = in.ID
		}
	}
	a.send(fmt.Sprintf(`{"type":"data","payload":{"to":%q,"body":42},"id":"r1"}`, bID) + "\n")
	expectFrame(t, a.nextSkipping(), "data", "r1", `"sent"`)
	f := b.nextSkipping()
	if f.Type != "data" || string(f.Payload) != "42" || f.Route != "relay" || !strings.HasPrefix(f.ID, "s-") {
		t.Fatalf("push %s", f.raw)
	}
	// Closing a connection from another one's handler.
	srv.Conn(bID).Close("kicked")
	expectFrame(t, b.nextSkipping(), "close", "", `{"reason":"kicked"}`)
	b.expectEOF()
}

// panickyAuditor panics on one event, standing in for any bug outside a
// handler.
type panickyAuditor struct{ on string }

func (a panickyAuditor) Audit(e AuditEvent) {
	if e.Event == a.on {
		panic("auditor bug")
	}
}

func TestPanicOutsideHandlerClosesOnlyThatConnection(t *testing.T) {
	srv, addr := startServer(t, Config{Rate: 0.001, RateBurst: 1, Audit: panickyAuditor{on: AuditRateLimited}})
	calm := dialPeer(t, addr)
	calm.send(`{"type":"ping","id":"c1"}` + "\n")
	expectFrame(t, calm.nextSkipping(), "pong", "c1", "")

	wild := dialPeer(t, addr)
	wild.send(`{"type":"data","payload":1,"id":"1"}` + "\n")
	expectFrame(t, wild.nextSkipping(), "data", "1", "1")
	wild.send(`{"type":"data","payload":2,"id":"2"}` + "\n")
	// The second frame is rate limited; auditing it panics: that connection
	// is cut off, nothing else.
	if f, err := wild.read(waitTimeout); err == nil {
		t.Fatalf("the panicking connection got %s", f.raw)
	}
	testutil.Eventually(t, "the panicking connection to leave", func() bool { return srv.ConnectionCount() == 1 })
	calm.send(`{"type":"ping","id":"c2"}` + "\n")
	expectFrame(t, calm.nextSkipping(), "pong", "c2", "")
}
