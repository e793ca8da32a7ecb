package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// TestStateTransitions pins the connection state machine: each step that
// is legal, and that nothing moves backwards or is entered twice.
func TestStateTransitions(t *testing.T) {
	states := []connState{stateAccepted, stateHandshaking, stateAuthenticating, stateOpen, stateClosing, stateClosed}
	legal := map[[2]connState]bool{
		{stateAccepted, stateHandshaking}: true, {stateAccepted, stateAuthenticating}: true, {stateAccepted, stateOpen}: true,
		{stateAccepted, stateClosing}: true, {stateHandshaking, stateAuthenticating}: true, {stateHandshaking, stateOpen}: true,
		{stateHandshaking, stateClosing}: true, {stateAuthenticating, stateOpen}: true, {stateAuthenticating, stateClosing}: true,
		{stateOpen, stateClosing}: true, {stateClosing, stateClosed}: true,
	}
	for _, from := range states {
		for _, to := range states {
			if got := from.legal(to); got != legal[[2]connState{from, to}] {
				t.Errorf("%s → %s legal = %v", from, to, got)
			}
		}
	}
	if got := fmt.Sprint(states); got != "[accepted handshaking authenticating open closing closed]" {
		t.Errorf("names %s", got)
	}
}

// broadcaster is a handler whose "broadcast" route pushes the payload to
// every connection Range offers and answers how many it reached.
var broadcaster = HandlerFunc(func(_ context.Context, c *Conn, m *protocol.Message) error {
	if m.Route != "broadcast" {
		return c.Reply(m, m.Payload)
	}
	n := 0
	c.Server().Range(func(o *Conn) bool {
		if _, err := o.Send(m.Payload, "pushed"); err == nil {
			n++
		}
		return true
	})
	return c.Reply(m, fmt.Appendf(nil, "%d", n))
})

// TestUnauthenticatedConnectionsReceiveNoPushes: with identities, a socket
// that never authenticates is not addressable. It was: a broadcast (and
// send_to, topics, presence) reached it until the auth timeout closed it,
// so 300 sockets that never read held every push in their queues. Now no
// frame is queued for it, it is not listed, and once it authenticates it is
// reached like any other.
func TestUnauthenticatedConnectionsReceiveNoPushes(t *testing.T) {
	srv, addr := startServer(t, Config{Auth: authConfig(nil), AuthTimeout: time.Minute, Handler: broadcaster})
	const silent = 50
	for range silent {
		dialPeer(t, addr) // connects, never authenticates, never reads
	}
	testutil.Eventually(t, "the silent sockets to be accepted", func() bool { return srv.ConnectionCount() == silent })

	a := dialPeer(t, addr)
	a.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a"}` + "\n")
	expectFrame(t, a.nextSkipping(), "auth", "a", "")
	big := `"` + strings.Repeat("p", 512<<10) + `"`
	for i := range 8 {
		a.send(fmt.Sprintf(`{"type":"data","route":"broadcast","payload":%s,"id":"b%d"}`+"\n", big, i))
		for f := a.nextSkipping(); ; f = a.nextSkipping() {
			if f.Type == "data" && f.Route == "pushed" {
				continue
			}
			expectFrame(t, f, "data", fmt.Sprintf("b%d", i), "1") // a itself, and no one else
			break
		}
	}
	srv.mu.Lock()
	var queued uint64
	for _, c := range srv.conns {
		if c.Identity() == "" {
			queued += c.w.out[typeIndex(protocol.TypeData)].Load()
			if c.state != stateAuthenticating {
				t.Errorf("%s is %s, want authenticating", c.id, c.state)
			}
		}
	}
	srv.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d data frames were queued for unauthenticated sockets", queued)
	}
	if infos := srv.Connections(); len(infos) != 1 {
		t.Fatalf("listed %d connections, want the one authenticated", len(infos))
	}

	// Authenticated, the same socket is reached.
	late := dialPeer(t, addr)
	late.send(`{"type":"auth","payload":{"token":"token-b"},"id":"l"}` + "\n")
	expectFrame(t, late.nextSkipping(), "auth", "l", "")
	a.send(`{"type":"data","route":"broadcast","payload":"hi","id":"after"}` + "\n")
	if f := late.nextSkipping(); f.Type != "data" || f.Route != "pushed" || string(f.Payload) != `"hi"` {
		t.Fatalf("the authenticated latecomer got %s", f.raw)
	}
}

// TestClosingConnectionsAreNotAddressable: once a connection's end is
// decided it leaves the listings before its socket closes.
func TestClosingConnectionsAreNotAddressable(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(1)
	srv, addr := startServer(t, Config{Handler: HandlerFunc(func(_ context.Context, c *Conn, m *protocol.Message) error {
		if m.Route == "hold" {
			entered.Done()
			<-release // the reader is busy: the connection cannot finish closing
		}
		return c.Reply(m, m.Payload)
	})})
	p := dialPeer(t, addr)
	p.send(`{"type":"data","route":"hold","payload":1,"id":"h"}` + "\n")
	entered.Wait()
	var c *Conn
	srv.Range(func(o *Conn) bool { c = o; return false })
	if c == nil {
		t.Fatal("the open connection is not listed")
	}
	c.w.abort(causeSlowConsumer) // from another goroutine, as a publish does
	if srv.Conn(c.ID()) != nil || len(srv.Connections()) != 0 || c.State() != "closing" {
		t.Fatalf("an aborted connection is still addressable (state %s)", c.State())
	}
	close(release)
	testutil.Eventually(t, "the connection to be gone", func() bool { return srv.ConnectionCount() == 0 })
	if c.State() != "closed" {
		t.Fatalf("state %s, want closed", c.State())
	}
}

// TestNoConnectionGoesDeafUnderSlowConsumerChurn is the review's load: 100
// subscribers that never read are cut off as slow consumers by 64 KiB
// pushes while 50 loops connect, let the connection park, and ping. Every
// ping must be answered within a bound far below the keep-alive timeout.
func TestNoConnectionGoesDeafUnderSlowConsumerChurn(t *testing.T) {
	srv, addr := startServer(t, Config{KeepAliveTimeout: time.Minute, MaxQueueBytes: 256 << 10, Handler: broadcaster})
	rounds := 4
	if testing.Short() {
		rounds = 2
	}
	var unanswered, probes atomic.Int64
	for range rounds {
		sinks := make([]*peer, 100)
		for i := range sinks {
			sinks[i] = dialPeer(t, addr) // never reads
		}
		testutil.Eventually(t, "the sinks to open", func() bool { return len(srv.Connections()) >= len(sinks) })
		stop := make(chan struct{})
		var loops sync.WaitGroup
		for range 50 {
			loops.Add(1)
			go func() {
				defer loops.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					p := dialProbe(addr)
					if p == nil {
						continue
					}
					probes.Add(1)
					if !p.pingAfterParking(srv, 2*time.Second) {
						unanswered.Add(1)
					}
					p.nc.Close()
				}
			}()
		}
		pusher := dialPeer(t, addr)
		payload := `"` + strings.Repeat("x", 64<<10) + `"`
		for i := range 12 {
			pusher.send(fmt.Sprintf(`{"type":"data","route":"broadcast","payload":%s,"id":"p%d"}`+"\n", payload, i))
			for f := pusher.nextSkipping(); f.ID != fmt.Sprintf("p%d", i); f = pusher.nextSkipping() {
			}
		}
		close(stop)
		loops.Wait()
		pusher.nc.Close()
		for _, s := range sinks {
			s.nc.Close()
		}
	}
	t.Logf("%d probes, %d unanswered", probes.Load(), unanswered.Load())
	if unanswered.Load() != 0 || probes.Load() == 0 {
		t.Fatalf("%d of %d probes went unanswered", unanswered.Load(), probes.Load())
	}
}

// setTestHookForget installs f as the parker's forget hook for the test.
func setTestHookForget(t *testing.T, f func(*Conn)) {
	testHookForget.Store(&f)
	t.Cleanup(func() { testHookForget.Store(nil) })
}

// probe is a short-lived client of the churn test.
type probe struct {
	nc net.Conn
	r  *bufio.Reader
}

// dialProbe connects, or returns nil when the connect fails.
func dialProbe(addr string) *probe {
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		return nil
	}
	return &probe{nc: nc, r: bufio.NewReader(nc)}
}

// pingAfterParking waits (at most 300 ms) until the server has parked the
// probe's connection, as a quiet agent's would be, then pings and reports
// whether the pong came within bound.
func (p *probe) pingAfterParking(srv *Server, bound time.Duration) bool {
	local := p.nc.LocalAddr().String()
	parked := func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for _, c := range srv.conns {
			if c.remote == local {
				return c.w.parked.Load()
			}
		}
		return false
	}
	tick := time.NewTicker(time.Millisecond)
	deadline := time.NewTimer(300 * time.Millisecond)
	for waiting := !parked(); waiting; {
		select {
		case <-tick.C:
			waiting = !parked()
		case <-deadline.C:
			waiting = false
		}
	}
	tick.Stop()
	deadline.Stop()
	p.nc.SetDeadline(time.Now().Add(bound))
	if _, err := p.nc.Write([]byte(`{"type":"ping","id":"x"}` + "\n")); err != nil {
		return false
	}
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.Contains(line, `"pong"`) {
			return true
		}
	}
}

// TestAuthFramesAreCounted: the first frame of an authenticating
// connection is read before the frame loop, which counts frames by type;
// auth frames were missing from the counts (samgw_frames_total).
func TestAuthFramesAreCounted(t *testing.T) {
	srv, addr := startServer(t, Config{Auth: authConfig(nil)})
	for i := range 3 {
		p := dialPeer(t, addr)
		p.send(fmt.Sprintf(`{"type":"auth","payload":{"token":"token-a"},"id":"a%d"}`+"\n", i))
		expectFrame(t, p.nextSkipping(), "auth", fmt.Sprintf("a%d", i), "")
	}
	st := srv.Stats()
	if in, out := st.FramesIn[typeIndex(protocol.TypeAuth)], st.FramesOut[typeIndex(protocol.TypeAuth)]; in != 3 || out != 3 {
		t.Fatalf("auth frames in %d, out %d; want 3 and 3", in, out)
	}
}
