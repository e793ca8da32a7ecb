package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripting"
)

// handlerVersion is the default.lua of soak version v: it echoes with its
// version, counts in conn.state and the store, and broadcasts on "chat".
func handlerVersion(v int) string {
	return fmt.Sprintf(`
function on_data(msg, conn)
  conn.state.n = (conn.state.n or 0) + 1
  store.incr("total")
  if msg.route == "chat" then
    gateway.broadcast({from = conn.id, text = msg.payload}, "chat", conn.id)
  end
  return {v = %d, echo = msg.payload, n = conn.state.n}
end`, v)
}

// TestSoak runs mixed traffic from many clients (requests on two routes,
// pings, broadcasts) while the handler is rewritten every second. No reply
// may be lost or wrong; afterwards the goroutines and the heap must be back
// where they started. 20 s by default; SAMGW_SOAK=5m for longer.
func TestSoak(t *testing.T) {
	skipIfShort(t)
	duration := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SAMGW_SOAK")); err == nil && d > 0 {
		duration = d
	}
	runtime.GC()
	goroutinesBefore := runtime.NumGoroutine()
	var memBefore runtime.MemStats
	runtime.ReadMemStats(&memBefore)

	dir := t.TempDir()
	write := func(v int) {
		tmp := filepath.Join(dir, ".default.lua.tmp")
		os.WriteFile(tmp, []byte(handlerVersion(v)), 0o644)
		os.Rename(tmp, filepath.Join(dir, "default.lua")) // as editors save
	}
	write(0)
	os.WriteFile(filepath.Join(dir, "chat.lua"), []byte(handlerVersion(0)), 0o644)
	quiet := slog.New(slog.DiscardHandler)
	engine, err := scripting.New(scripting.Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(gateway.Config{Handler: engine, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- engine.Watch(watchCtx, 20*time.Millisecond) }()

	const clients = 40
	sk := &soakCounters{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		c, err := gateway.NewClient(gateway.ClientConfig{Addr: ln.Addr().String(), Logger: quiet, OnMessage: func(m *protocol.Message) {
			if m.Route == "chat" && strings.HasPrefix(m.ID, "s-") {
				sk.pushes.Add(1)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(timeoutCtx(t, testutil.WaitTimeout)); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Disconnect("soak over")
			sk.client(c, i, stop)
		}()
	}

	version := 0
	t.Run("traffic across rewrites: no reply lost or wrong", func(t *testing.T) {
		tick := time.NewTicker(time.Second)
		end := time.Now().Add(duration)
		for time.Now().Before(end) && sk.failures.Load() == 0 {
			<-tick.C
			version++
			write(version)
		}
		tick.Stop()
		close(stop)
		wg.Wait()
		if n := sk.failures.Load(); n > 0 {
			t.Fatalf("%d failures; first: %s", n, *sk.firstFailure.Load())
		}
		t.Logf("%v: %d requests answered, %d broadcasts delivered, %d rewrites (generation %d), no reply lost or wrong",
			duration, sk.answered.Load(), sk.pushes.Load(), version, engine.Generation())
		if sk.answered.Load() == 0 || sk.pushes.Load() == 0 || engine.Generation() < 2 {
			t.Fatal("the soak did not exercise requests, broadcasts and reloads")
		}
	})
	stopWatch()
	if err := <-watched; err != nil {
		t.Errorf("Watch: %v", err)
	}
	if err := srv.Shutdown(timeoutCtx(t, testutil.WaitTimeout)); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
		t.Fatal(err)
	}
	// On the test's own goroutine: a subtest's goroutine would count.
	checkReturned(t, goroutinesBefore, &memBefore)
}

// soakCounters are what the soak's clients report.
type soakCounters struct {
	answered, pushes, failures atomic.Int64
	firstFailure               atomic.Pointer[string]
}

func (sk *soakCounters) fail(format string, args ...any) {
	sk.failures.Add(1)
	msg := fmt.Sprintf(format, args...)
	sk.firstFailure.CompareAndSwap(nil, &msg)
}

// client is soak client i until stop: requests (every seventh on the chat
// route for a quarter of the clients) checked against their reply, and a
// ping every tenth.
func (sk *soakCounters) client(c *gateway.Client, i int, stop <-chan struct{}) {
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
		route := ""
		switch {
		case n%10 == 0:
			if _, err := c.PingWait(ctx); err != nil {
				sk.fail("client %d ping: %v", i, err)
			}
			cancel()
			continue
		case n%7 == 0 && i%4 == 0:
			route = "chat"
		}
		payload := fmt.Sprintf(`"%d-%d"`, i, n)
		reply, err := c.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: route, Payload: []byte(payload)})
		cancel()
		if err != nil {
			sk.fail("client %d request %d: %v", i, n, err)
			return
		}
		var r struct {
			Echo string `json:"echo"`
		}
		if json.Unmarshal(reply.Payload, &r) != nil || `"`+r.Echo+`"` != payload {
			sk.fail("client %d request %d: reply %s", i, n, reply.Payload)
			return
		}
		sk.answered.Add(1)
	}
}

// checkReturned checks that everything the soak started has stopped, and
// its memory is back.
func checkReturned(t *testing.T, goroutinesBefore int, memBefore *runtime.MemStats) {
	testutil.Eventually(t, "goroutines to return to their count before the soak", func() bool {
		return runtime.NumGoroutine() <= goroutinesBefore
	})
	runtime.GC()
	var memAfter runtime.MemStats
	runtime.ReadMemStats(&memAfter)
	grown := int64(memAfter.HeapAlloc) - int64(memBefore.HeapAlloc)
	t.Logf("heap %d KiB before, %d KiB after", memBefore.HeapAlloc>>10, memAfter.HeapAlloc>>10)
	if grown > 32<<20 {
		t.Fatalf("the heap grew by %d MiB over the soak", grown>>20)
	}
}
