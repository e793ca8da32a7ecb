package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/histogram"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripting"
)

// BenchmarkTwoNodeFlow is the agent work exchange's flow on two nodes over
// NATS: a producer connection on the first submits tasks through a handler
// (16 in flight), which pushes each to a work queue; eight workers, four
// on each node, take them and report back by acking. It reports tasks/s
// (acked) and the producer's p99, with the submit route handling the
// producer's messages one at a time, and 16 at once (--route-concurrency).
func BenchmarkTwoNodeFlow(b *testing.B) {
	ns := natsServer(b, -1, b.TempDir())
	b.Cleanup(ns.Shutdown)
	for _, tc := range []struct {
		name string
		n    int
	}{{"one-at-a-time", 0}, {"16-at-once", 16}} {
		b.Run(tc.name, func(b *testing.B) {
			scripts := b.TempDir()
			for name, src := range map[string]string{
				"submit.lua": `function on_data(msg) return queue.push("flow", msg.payload) end`,
				"work.lua":   `function on_data(msg, conn) return queue.join(conn.id, "flow", {prefetch = 4}) end`,
			} {
				if err := os.WriteFile(filepath.Join(scripts, name), []byte(src), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			var acked atomic.Int64
			more := make(chan struct{}, 1)
			var nodes []string
			for i := range 2 {
				nodes = append(nodes, flowNode(b, fmt.Sprintf("%s-n%d", tc.name, i), ns.ClientURL(), scripts, tc.n))
			}
			for w := range 8 {
				cl := flowClient(b, nodes[w%2], func(context.Context, gateway.Job) error {
					acked.Add(1)
					select {
					case more <- struct{}{}:
					default:
					}
					return nil
				})
				if _, err := cl.RequestMessage(b.Context(), protocol.Message{Type: protocol.TypeData, Route: "work", Payload: []byte(`{}`)}); err != nil {
					b.Fatal(err)
				}
			}
			producer := flowClient(b, nodes[0], nil)
			task := []byte(`{"task":"summarise","text":"` + fmt.Sprintf("%0100d", 0) + `"}`)
			var next atomic.Int64
			var mu sync.Mutex
			var lat histogram.Histogram
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var h histogram.Histogram
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						if _, err := producer.RequestMessage(b.Context(), protocol.Message{Type: protocol.TypeData, Route: "submit", Payload: task}); err != nil {
							b.Error(err)
							return
						}
						h.Record(time.Since(t0))
					}
					mu.Lock()
					lat.Merge(&h)
					mu.Unlock()
				}()
			}
			wg.Wait()
			timeout := time.NewTimer(time.Minute)
			defer timeout.Stop()
			for acked.Load() < int64(b.N) {
				select {
				case <-more:
				case <-timeout.C:
					b.Fatalf("%d of %d tasks acked", acked.Load(), b.N)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
			b.ReportMetric(float64(lat.Quantile(0.99).Microseconds())/1000, "p99-ms")
		})
	}
}

// flowNode starts a node whose engine has work queues on the cluster's
// JetStream and returns its address.
func flowNode(b *testing.B, name, natsURL, scripts string, concurrency int) string {
	quiet := slog.New(slog.DiscardHandler)
	c, err := Connect(context.Background(), Config{URLs: natsURL, Node: name, PresenceTTL: 3 * time.Second, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	q, err := delivery.NewQueues(b.Context(), delivery.QueueConfig{Conn: c.Conn(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	cfg := scripting.Config{Dir: scripts, Logger: quiet, Cluster: c, KV: c.Store(), Queues: q, Timeout: 5 * time.Second}
	if concurrency > 0 {
		cfg.RouteConcurrency = map[string]int{"submit": concurrency}
	}
	e, err := scripting.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	srv, addr := gatewaytest.Serve(b, "", gateway.Config{Handler: e, Jobs: q, IDPrefix: c.IDPrefix()})
	if err := c.Start(srv); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		q.Close()
		e.Close()
		c.Close()
	})
	return addr
}

func flowClient(b *testing.B, addr string, onJob func(context.Context, gateway.Job) error) *gateway.Client {
	cl, err := gateway.NewClient(gateway.ClientConfig{Addr: addr, Logger: slog.New(slog.DiscardHandler), OnJob: onJob})
	if err != nil {
		b.Fatal(err)
	}
	if err := cl.Connect(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Disconnect("done") })
	return cl
}
