package gateway

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestUnauthenticatedPeersCannotHoldMemory: 100 sockets that send 1 MB
// without a newline before authenticating once held 112 MB for the auth
// timeout; now each is cut off at the unauthenticated frame limit.
func TestUnauthenticatedPeersCannotHoldMemory(t *testing.T) {
	srv, addr := startServer(t, Config{Auth: authConfig(nil), AuthTimeout: time.Minute, MaxFrameSize: 2 << 20})
	before := heapInUse()
	line := strings.Repeat("x", 1_000_000)
	peers := make([]*peer, 100)
	for i := range peers {
		peers[i] = dialPeer(t, addr)
		// The server stops reading at its limit, so a blocked write here
		// would be the bound holding: write in the background.
		go io.WriteString(peers[i].nc, line) //nolint:errcheck // the server hangs up mid-write
	}
	for i, p := range peers {
		f, err := p.read(waitTimeout)
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
		expectError(t, f, protocol.CodeFrameTooLarge, "")
		if !strings.Contains(string(f.Payload), fmt.Sprint(DefaultMaxFrameUnauthenticated)) {
			t.Fatalf("peer %d: %s", i, f.raw)
		}
	}
	testutil.Eventually(t, "the oversized peers are gone", func() bool { return srv.ConnectionCount() == 0 })
	if grown := heapInUse() - before; grown > 16<<20 {
		t.Fatalf("the heap grew by %d MiB", grown>>20)
	}
	// Once authenticated, the full limit applies.
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a", "")
	big := `"` + strings.Repeat("y", 100_000) + `"`
	p.send(`{"type":"data","payload":` + big + `,"id":"big"}` + "\n")
	expectFrame(t, p.nextSkipping(), "data", "big", big)
}

// TestIdleUnauthenticatedSocketsCannotLockOutAClient: at --max-conns 20,
// 20 idle sockets used to keep a valid client out. Now at most a quarter of
// the slots may be unauthenticated, the oldest is closed to admit a new
// connection, and the valid client gets in.
func TestIdleUnauthenticatedSocketsCannotLockOutAClient(t *testing.T) {
	srv, addr := startServer(t, Config{Auth: authConfig(nil), AuthTimeout: time.Minute, MaxConns: 20, KeepAliveInterval: time.Minute})
	idle := make([]*peer, 40)
	for i := range idle {
		idle[i] = dialPeer(t, addr)
	}
	// At most five stay; every other one is closed with a reason (evicted
	// for a newer one, or refused while evictions were still closing).
	testutil.Eventually(t, "five unauthenticated connections left", func() bool { return srv.ConnectionCount() == 5 })
	closed, open := 0, 0
	for i, p := range idle {
		f, err := p.read(200 * time.Millisecond)
		switch {
		case isTimeout(err):
			open++
		case err != nil:
			t.Fatalf("idle socket %d was dropped without a reason: %v", i, err)
		default:
			expectFrame(t, f, "close", "", `{"reason":"too many unauthenticated connections"}`)
			closed++
		}
	}
	if open != 5 || closed != 35 {
		t.Fatalf("%d idle sockets open and %d closed, want 5 and 35", open, closed)
	}
	if st := srv.Stats(); st.UnauthenticatedEvicted == 0 || st.UnauthenticatedEvicted+st.ConnectionsRefused != 35 {
		t.Fatalf("evicted %d + refused %d, want 35", st.UnauthenticatedEvicted, st.ConnectionsRefused)
	}

	// Fill the server with authenticated clients: the pending peers make
	// way, and no authenticated client is ever closed to admit another.
	var clients []*peer
	for i := range 20 {
		p := dialPeer(t, addr)
		p.send(`{"type":"auth","payload":{"token":"token-a"},"id":"a"}` + "\n")
		expectFrame(t, p.nextSkipping(), "auth", "a", "")
		p.send(fmt.Sprintf(`{"type":"ping","id":"p%d"}`+"\n", i))
		expectFrame(t, p.nextSkipping(), "pong", fmt.Sprintf("p%d", i), "")
		clients = append(clients, p)
	}
	late := dialPeer(t, addr)
	f, err := late.read(waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	expectFrame(t, f, "close", "", `{"reason":"server full"}`)
	for i, p := range clients {
		p.send(fmt.Sprintf(`{"type":"ping","id":"q%d"}`+"\n", i))
		expectFrame(t, p.nextSkipping(), "pong", fmt.Sprintf("q%d", i), "")
	}
}

// TestReadBufferShrinksAfterALargeFrame: a 1 MiB frame followed by the
// start of another, then tiny frames trickling in, once kept each
// connection's enlarged read buffer (100 connections: 150 MB); now the
// buffer shrinks as soon as what is left fits a small one.
func TestReadBufferShrinksAfterALargeFrame(t *testing.T) {
	_, addr := startServer(t, Config{MaxFrameSize: 2 << 20, KeepAliveInterval: time.Minute})
	before := heapInUse()
	big := `{"type":"data","payload":"` + strings.Repeat("y", 1<<20) + `","id":"big"}`
	peers := make([]*peer, 40)
	for i := range peers {
		p := dialPeer(t, addr)
		peers[i] = p
		go io.WriteString(p.nc, big+"\n{") //nolint:errcheck // checked by the reply
		if f := p.next(); f.ID != "big" {
			t.Fatalf("peer %d: %.80s", i, f.raw)
		}
		for j := range 3 {
			p.send(fmt.Sprintf(`"type":"ping","id":"t%d"}`+"\n{", j))
			expectFrame(t, p.next(), "pong", fmt.Sprintf("t%d", j), "")
		}
	}
	if grown := heapInUse() - before; grown > 16<<20 {
		t.Fatalf("40 connections that each read one 1 MiB frame still hold %d MiB", grown>>20)
	}
}
