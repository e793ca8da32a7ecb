package gateway

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// TestOutboundMemoryIsBoundedInSum: every connection's queue has a bound,
// but their sum had none (100 clients that never read their 1,000 KiB
// echoes took the server to 1.95 GB). Here 12 clients that never read ask
// for 4 MiB of echoes each, every one under its own queue bound (16 MiB);
// the server holds at most its MaxPendingBytes (4 MiB) of them in sum,
// closing the largest queues as slow consumers, while a client that reads
// is answered throughout.
func TestOutboundMemoryIsBoundedInSum(t *testing.T) {
	const budget = 4 << 20
	srv, addr := startServer(t, Config{MaxQueueBytes: 16 << 20, MaxPendingBytes: budget, MaxFrameSize: 128 << 10})
	reader := dialPeer(t, addr)

	frame := `{"type":"data","payload":"` + strings.Repeat("x", 64<<10) + `","id":"e"}` + "\n"
	burst := strings.Repeat(frame, 64) // 4 MiB of echoes asked for
	sinks := make([]net.Conn, 12)
	for i := range sinks {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.(*net.TCPConn).SetReadBuffer(4096)
		sinks[i] = nc
	}
	// Small kernel buffers on the server's side too, so the echoes pile
	// up in the server's queues rather than in the kernel's.
	testutil.Eventually(t, "the sinks to be accepted", func() bool { return srv.ConnectionCount() == len(sinks)+1 })
	srv.mu.Lock()
	for _, c := range srv.conns {
		c.w.nc.(*net.TCPConn).SetWriteBuffer(4096)
	}
	srv.mu.Unlock()

	var wg sync.WaitGroup
	for _, nc := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc.Write([]byte(burst)) //nolint:errcheck // the server may close it as a slow consumer mid-write
		}()
	}
	for i := range 50 { // a reading client is served all along
		reader.send(fmt.Sprintf(`{"type":"ping","id":"p%d"}`+"\n", i))
		expectFrame(t, reader.nextSkipping(), "pong", fmt.Sprintf("p%d", i), "")
	}
	wg.Wait()
	testutil.Eventually(t, "connections to be shed", func() bool { return srv.Stats().OutboundShed > 0 })
	// The bound is checked as frames are queued: the sum may pass it by the
	// frames being queued at that moment (one each on two cores) and what
	// each connection holds uncounted (accountFloor).
	slack := int64(4*(64<<10+100)) + int64(len(sinks)+1)*accountFloor
	if peak := srv.wcfg.budget.peak.Load(); peak > budget+slack {
		t.Fatalf("the connections held %d bytes in sum, past the bound %d (+%d)", peak, budget, slack)
	}
	st := srv.Stats()
	t.Logf("peak %d KiB of %d KiB; %d shed; %d slow consumers", srv.wcfg.budget.peak.Load()>>10, budget>>10, st.OutboundShed, st.SlowConsumers)
	reader.send(`{"type":"ping","id":"last"}` + "\n")
	expectFrame(t, reader.nextSkipping(), "pong", "last", "")
	for _, nc := range sinks {
		nc.Close()
	}
	testutil.Eventually(t, "the sinks to be gone", func() bool { return srv.ConnectionCount() == 1 })
	if left := srv.Stats().PendingBytes; left != 0 {
		t.Fatalf("%d bytes still counted with only an idle reader left", left)
	}
}
