package scripting

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
)

// barrier is an HTTP backend that holds each request until n are in
// flight at once (then answers them all) or until hold has passed, and
// reports the most it saw in flight: a route whose calls of one connection
// do not overlap never has two there.
func barrier(t *testing.T, n int, hold time.Duration) (addr string, peak func() int) {
	var mu sync.Mutex
	inFlight, most := 0, 0
	open := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == n {
			close(open)
		}
		mu.Unlock()
		timer := time.NewTimer(hold)
		defer timer.Stop()
		select {
		case <-open:
		case <-timer.C:
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		fmt.Fprint(w, r.URL.Query().Get("n"))
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// TestRouteConcurrency: a route with RouteConcurrency 8 handles eight
// messages of one connection at once (they meet at a barrier that only
// eight simultaneous calls pass), each reply carrying its own message's
// id; conn.state stays whole; a ninth waits for a free slot instead of
// starting.
func TestRouteConcurrency(t *testing.T) {
	const n = 8
	backend, peak := barrier(t, n, waitTimeout)
	_, port, _ := net.SplitHostPort(backend)
	f := newFixture(t, map[string]string{"tool.lua": `
function on_data(msg, conn)
  conn.state.calls = (conn.state.calls or 0) + 1
  local res = assert(http.get("http://` + backend + `/?n=" .. msg.payload))
  return {n = tonumber(res.body)}
end`, "count.lua": `function on_data(msg, conn) return conn.state.calls or 0 end`},
		Config{RouteConcurrency: map[string]int{"tool": n}, RouteTimeouts: map[string]time.Duration{"tool": waitTimeout},
			Upstream: &UpstreamConfig{Allow: []string{"127.0.0.1:" + port}}})
	c, _ := f.client()
	var wg sync.WaitGroup
	replies := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = tryRequest(c, "tool", strconv.Itoa(i))
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || replies[i] != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("call %d: %s %v (replies %v)", i, replies[i], errs[i], replies)
		}
	}
	if p := peak(); p != n {
		t.Fatalf("%d calls were in flight at once, want %d", p, n)
	}
	// Each call read conn.state when it began and saved it when it ended:
	// overlapping calls each count from what they read, so the count is
	// between 1 and n, and never torn.
	got, err := request(t, c, "count", "null")
	if k, _ := strconv.Atoi(got); err != nil || k < 1 || k > n {
		t.Fatalf("conn.state after the calls: %s %v", got, err)
	}
}

// TestRouteConcurrencyOffKeepsOrder: without RouteConcurrency a route
// handles one connection's messages one at a time, in order: two sent at
// once never meet at the backend.
func TestRouteConcurrencyOffKeepsOrder(t *testing.T) {
	backend, peak := barrier(t, 2, 200*time.Millisecond)
	_, port, _ := net.SplitHostPort(backend)
	f := newFixture(t, map[string]string{"tool.lua": `
function on_data(msg)
  local res = assert(http.get("http://` + backend + `/?n=" .. msg.payload))
  return {n = tonumber(res.body)}
end`}, Config{Upstream: &UpstreamConfig{Allow: []string{"127.0.0.1:" + port}}})
	c, _ := f.client()
	var wg sync.WaitGroup
	got := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = tryRequest(c, "tool", strconv.Itoa(i))
		}()
	}
	wg.Wait()
	for i, g := range got {
		if g != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("call %d: %s", i, g)
		}
	}
	if p := peak(); p != 1 {
		t.Fatalf("%d calls of one connection were in flight at once", p)
	}
}

func TestCheckRouteConcurrency(t *testing.T) {
	for _, tc := range []struct {
		m  map[string]int
		ok bool
	}{
		{map[string]int{"tool": 16}, true},
		{map[string]int{"tool": 1}, true},
		{map[string]int{"tool": 0}, false},
		{map[string]int{"tool": MaxRouteConcurrency + 1}, false},
		{map[string]int{"bad route!": 2}, false},
	} {
		if err := CheckRouteConcurrency(tc.m); (err == nil) != tc.ok {
			t.Errorf("%v: %v", tc.m, err)
		}
	}
}

// BenchmarkRouteConcurrency: one producer connection with 16 requests in
// flight on a handler that waits 10 ms for its tool (an HTTP backend), with
// the route handling them one at a time and 16 at once. Reports msgs/s.
func BenchmarkRouteConcurrency(b *testing.B) {
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond) // the tool's own latency
		fmt.Fprint(w, "1")
	}))
	b.Cleanup(tool.Close)
	_, port, _ := net.SplitHostPort(tool.Listener.Addr().String())
	for _, tc := range []struct {
		name string
		n    int
	}{{"one-at-a-time", 0}, {"16-at-once", 16}} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			src := `function on_data(msg) return {ok = assert(http.get("http://` + tool.Listener.Addr().String() + `/")).status} end`
			if err := os.WriteFile(filepath.Join(dir, "tool.lua"), []byte(src), 0o644); err != nil {
				b.Fatal(err)
			}
			cfg := Config{Dir: dir, Logger: slog.New(slog.DiscardHandler), Upstream: &UpstreamConfig{Allow: []string{"127.0.0.1:" + port}}}
			if tc.n > 0 {
				cfg.RouteConcurrency = map[string]int{"tool": tc.n}
			}
			e, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { e.Close() })
			_, addr := gatewaytest.Serve(b, "", gateway.Config{Handler: e})
			c, err := gateway.NewClient(gateway.ClientConfig{Addr: addr, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Connect(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Disconnect("done") })
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := tryRequest(c, "tool", "1"); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
