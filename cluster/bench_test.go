package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/secureagentmessaging/samgw/bench"
)

// BenchmarkSend compares a handler that pushes each message to a
// connection on its own node with one that pushes to a connection on
// another node (a NATS request per message), and answers the sender: 16
// connections × 16 in flight over loopback, NATS in-process.
func BenchmarkSend(b *testing.B) {
	ns := natsServer(b, -1, b.TempDir())
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	scripts := b.TempDir()
	os.WriteFile(filepath.Join(scripts, "default.lua"), []byte(handler), 0o644)
	n1, n2 := startNode(b, "n1", ns.ClientURL(), scripts), startNode(b, "n2", ns.ClientURL(), scripts)
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
