package reliability

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// recorder serves the echo and records every payload it receives.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *recorder) HandleData(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
	r.mu.Lock()
	r.seen[string(m.Payload)]++
	r.mu.Unlock()
	return c.Reply(m, m.Payload)
}

func (r *recorder) count(payload string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[payload]
}

func serveOn(t *testing.T, addr string, h gateway.Handler) (*gateway.Server, chan error, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(gateway.Config{Handler: h, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return srv, served, ln.Addr().String()
}

// TestRestartUnderTraffic stops the server while clients send, then starts a
// new one on the same address. The promise (documented in docs/reliability.md): a
// frame written to a connection that breaks is delivered at most once, and
// its Request fails with ErrConnectionLost rather than hanging; every frame
// sent while disconnected is queued and delivered exactly once after the
// reconnection.
func TestRestartUnderTraffic(t *testing.T) {
	skipIfShort(t)
	rec := &recorder{seen: map[string]int{}}
	srv, served, addr := serveOn(t, "127.0.0.1:0", rec)

	const clients = 10
	quiet := slog.New(slog.DiscardHandler)
	cs := make([]*gateway.Client, clients)
	for i := range cs {
		c, err := gateway.NewClient(gateway.ClientConfig{Addr: addr, Logger: quiet, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
		if err := cs[i].Connect(timeoutCtx(t, testutil.WaitTimeout)); err != nil {
			t.Fatal(err)
		}
		defer cs[i].Disconnect("done")
	}

	t.Run("requests before the restart are answered", func(t *testing.T) {
		for i, c := range cs {
			if _, err := c.Request(timeoutCtx(t, testutil.WaitTimeout), "before-"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
	})
	// Requests in flight when the server goes away end one way or the other,
	// never hang.
	var inflight sync.WaitGroup
	outcomes := make(chan error, clients)
	for i, c := range cs {
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			_, err := c.Request(timeoutCtx(t, testutil.WaitTimeout), "inflight-"+strconv.Itoa(i))
			outcomes <- err
		}()
	}
	if err := srv.Shutdown(timeoutCtx(t, testutil.WaitTimeout)); err != nil {
		t.Fatal(err)
	}
	<-served

	// While the server is down, every client queues 20 frames.
	testutil.Eventually(t, "the clients to notice", func() bool {
		for _, c := range cs {
			if c.IsConnected() {
				return false
			}
		}
		return true
	})
	var queued []string
	for i, c := range cs {
		for j := range 20 {
			p := `"queued-` + strconv.Itoa(i) + "-" + strconv.Itoa(j) + `"`
			if _, err := c.SendMessage(protocol.Message{Type: protocol.TypeData, Payload: []byte(p)}); err != nil {
				t.Fatal(err)
			}
			queued = append(queued, p)
		}
	}
	srv2, served2, _ := serveOn(t, addr, rec)
	defer func() {
		srv2.Shutdown(context.Background())
		<-served2
	}()
	t.Run("requests in flight end, never hang", func(t *testing.T) {
		// The requests that raced the shutdown: answered before it, failed
		// with ErrConnectionLost (written, then the connection broke), or
		// queued (the client had noticed) and answered now.
		inflight.Wait()
		close(outcomes)
		for err := range outcomes {
			if err != nil && !errors.Is(err, gateway.ErrConnectionLost) {
				t.Errorf("in-flight request: %v, want success or ErrConnectionLost", err)
			}
		}
	})
	t.Run("frames queued while down are delivered exactly once", func(t *testing.T) {
		testutil.Eventually(t, "every queued frame to arrive", func() bool {
			for _, p := range queued {
				if rec.count(p) == 0 {
					return false
				}
			}
			return true
		})
		for _, p := range queued {
			if n := rec.count(p); n != 1 {
				t.Errorf("%s delivered %d times", p, n)
			}
		}
	})
	t.Run("every client works after the restart", func(t *testing.T) {
		for i, c := range cs {
			if _, err := c.Request(timeoutCtx(t, testutil.WaitTimeout), "after-"+strconv.Itoa(i)); err != nil {
				t.Errorf("client %d after the restart: %v", i, err)
			}
		}
	})
}
