package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/secureagentmessaging/samgw/bench"
)

// BenchmarkSend compares a handler that pushes each message to a
// connection on its own node with one that pushes to a connection on
// another node (a NATS request per message), and answers the sender: 16
// connections × 16 in flight over loopback, NATS in-process.
func BenchmarkSend(b *testing.B) {
	natsURL, scripts := benchCluster(b, handler)
	n1, n2 := startNode(b, "n1", natsURL, scripts), startNode(b, "n2", natsURL, scripts)
	local, remote := connectAgent(b, n1, "a"), connectAgent(b, n2, "b")
	for name, target := range map[string]string{"to_local": local.id, "to_remote": remote.id} {
		src := fmt.Sprintf(`function on_data(msg) assert(gateway.send(%q, msg.payload)) return msg.payload end`, target)
		os.WriteFile(filepath.Join(scripts, name+".lua"), []byte(src), 0o644)
	}
	if err := n1.engine.Reload(); err != nil {
		b.Fatal(err)
	}
	go drain(local)
	go drain(remote)
	for _, route := range []string{"to_local", "to_remote"} {
		b.Run(route, func(b *testing.B) {
			res, err := bench.Run(context.Background(), bench.Config{Addr: n1.addr, Token: "c", Conns: 16, Pipeline: 16, Size: 128,
				Route: route, Messages: max(b.N, 1000)})
			if err != nil || res.Errors != 0 {
				b.Fatalf("%v, %d errors: %s", err, res.Errors, res.FirstError)
			}
			b.ReportMetric(res.FramesPerSec, "frames/s")
			b.ReportMetric(res.P50, "p50-ms")
			b.ReportMetric(res.P99, "p99-ms")
		})
	}
}

// drain consumes an agent's pushes until its client stops.
func drain(a *agent) {
	for {
		select {
		case <-a.pushes:
		case <-a.c.Done():
			return
		}
	}
}

// BenchmarkBroadcast15000 measures a broadcast's fan-out over three nodes
// holding 15,000 connections between them: the connections are held by
// `samgw bench --hold` in a process of its own (file descriptors: this one
// holds the servers' side), which sends ten broadcasts a second apart and
// times each until the last connection has it. Run it with -benchtime 1x.
func BenchmarkBroadcast15000(b *testing.B) {
	fanOutBench(b, 3, 15000, `function on_data(msg, conn) return {reached = gateway.broadcast(msg.payload, "b", conn.id)} end`)
}

// BenchmarkPublish10000 measures gateway.publish to a topic with 10,000
// subscribers: each held connection subscribes to room.1 first, then ten
// publishes are timed until the last subscriber has each; on one node, and
// with the subscribers spread over three nodes (the publish crosses NATS to
// the other two). Run it with -benchtime 1x.
func BenchmarkPublish10000(b *testing.B) {
	handler := `function on_data(msg, conn)
  if msg.payload.subscribe then return gateway.subscribe(conn.id, msg.payload.subscribe) end
  return {reached = gateway.publish("room.1", msg.payload, "b")}
end`
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			fanOutBench(b, nodes, 10000, handler, "--hold-send", `{"subscribe":"room.1"}`, "--hold-route", "broadcast")
		})
	}
}

// fanOutBench serves handler as route "broadcast" on the given number of
// nodes, holds conns connections over them from a `samgw bench --hold`
// process (with extra flags), has it send ten frames to the route a second
// apart, and reports the time until the last held connection had each.
func fanOutBench(b *testing.B, nodes, conns int, handler string, holdFlags ...string) {
	natsURL, scripts := benchCluster(b, handler)
	os.WriteFile(filepath.Join(scripts, "broadcast.lua"), []byte(handler), 0o644)
	var addrs []string
	for i := range nodes {
		addrs = append(addrs, startNode(b, fmt.Sprintf("n%d", i+1), natsURL, scripts).addr)
	}
	bin := filepath.Join(b.TempDir(), "samgw")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/samgw").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	args := append([]string{"bench", "--addr", strings.Join(addrs, ","), "--token", "c", "--hold", strconv.Itoa(conns),
		"--duration", "14s", "--broadcasts", "10", "--broadcast-route", "broadcast", "--json"}, holdFlags...)
	hold := exec.Command(bin, args...)
	hold.Stderr = os.Stderr
	out, err := hold.Output()
	if err != nil {
		b.Fatalf("hold: %v", err)
	}
	var res bench.HoldResult
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	if len(res.Broadcasts) == 0 || res.Lost != 0 {
		b.Fatalf("result %+v", res)
	}
	var times []float64
	for _, r := range res.Broadcasts {
		if r.Reached != conns {
			b.Errorf("a broadcast reached %d of %d", r.Reached, conns)
		}
		times = append(times, r.LastMs)
	}
	slices.Sort(times)
	b.ReportMetric(times[len(times)/2], "median-ms-to-last")
	b.ReportMetric(times[len(times)-1], "max-ms-to-last")
	b.ReportMetric(res.PingP99, "ping-p99-ms")
}

// benchCluster starts an in-process NATS for a benchmark (stopped after
// the nodes, at cleanup) and a scripts directory with handler as
// default.lua.
func benchCluster(b *testing.B, handler string) (natsURL, scripts string) {
	ns := natsServer(b, -1, b.TempDir())
	b.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	scripts = b.TempDir()
	if err := os.WriteFile(filepath.Join(scripts, "default.lua"), []byte(handler), 0o644); err != nil {
		b.Fatal(err)
	}
	return ns.ClientURL(), scripts
}

// BenchmarkStoreIncr compares store.incr on one key shared by every
// writer with one key per connection, on two nodes over NATS (the store is
// JetStream KV: an incr is a compare-and-set that retries when another
// writer won): 16 connections, 8 on each node, 4 in flight each.
func BenchmarkStoreIncr(b *testing.B) {
	natsURL, scripts := benchCluster(b, handler)
	for name, src := range map[string]string{
		"shared":   `function on_data(msg) store.incr("hot") return msg.payload end`,
		"per_conn": `function on_data(msg, conn) store.incr("count:" .. conn.id) return msg.payload end`,
	} {
		os.WriteFile(filepath.Join(scripts, name+".lua"), []byte(src), 0o644)
	}
	n1, n2 := startNode(b, "n1", natsURL, scripts), startNode(b, "n2", natsURL, scripts)
	for _, route := range []string{"shared", "per_conn"} {
		b.Run(route, func(b *testing.B) {
			results := make(chan bench.Result, 2)
			errs := make(chan error, 2)
			for _, n := range []*node{n1, n2} {
				go func() {
					res, err := bench.Run(context.Background(), bench.Config{Addr: n.addr, Token: "c", Conns: 8, Pipeline: 4, Size: 16,
						Route: route, Messages: max(b.N/2, 500)})
					if err == nil && res.Errors != 0 && route == "per_conn" {
						err = fmt.Errorf("%d errors: %s", res.Errors, res.FirstError)
					}
					results <- res
					errs <- err
				}()
			}
			var rate, p99 float64
			var failed uint64 // a shared key's incr can give up: "too much contention"
			for range 2 {
				res := <-results
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
				rate += res.FramesPerSec
				p99 = max(p99, res.P99)
				failed += res.Errors
			}
			b.ReportMetric(rate, "incr/s")
			b.ReportMetric(p99, "p99-ms")
			b.ReportMetric(float64(failed), "gave-up")
		})
	}
}
