package delivery_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripting"
)

// The benchmarks compare, on this machine and in one run, the durable path
// (gateway.deliver, an ordered consumer to the resuming agent, its acks)
// with the at-most-once push (gateway.send_to) through the same Lua
// handler and sockets, and with what a plain nats.go JetStream loop does
// on the same embedded server. Each reports msgs/s.

const benchSenders = 16 // connections sending at once: handler calls of one connection run one at a time

// benchGateway is an embedded JetStream, the mailboxes, the Lua handlers
// "put" (deliver) and "push" (send_to) and a gateway with token
// authentication for "sender" and "alice".
type benchGateway struct {
	emb   *delivery.Embedded
	nc    *nats.Conn
	boxes *delivery.Mailboxes
	addr  string
}

func startBenchGateway(b *testing.B) *benchGateway {
	b.Helper()
	dir := b.TempDir()
	emb, err := delivery.StartEmbedded(delivery.EmbeddedConfig{Dir: filepath.Join(dir, "data")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emb.Shutdown)
	nc, err := emb.Connect("bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	boxes, err := delivery.New(b.Context(), delivery.Config{Conn: nc, MaxMessages: 10_000_000, MaxBytes: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(boxes.Close)
	scripts := filepath.Join(dir, "handlers")
	os.MkdirAll(scripts, 0o755)
	os.WriteFile(filepath.Join(scripts, "put.lua"), []byte(`function on_data(msg) return gateway.deliver("alice", msg.payload) end`), 0o644)
	os.WriteFile(filepath.Join(scripts, "push.lua"), []byte(`function on_data(msg) return gateway.send_to("alice", msg.payload) end`), 0o644)
	engine, err := scripting.New(scripting.Config{Dir: scripts, Mailboxes: boxes, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { engine.Close() })
	var ids []gateway.Identity
	for _, name := range []string{"sender", "alice"} {
		sum := sha256.Sum256([]byte(name))
		ids = append(ids, gateway.Identity{Name: name, TokenSHA256: hex.EncodeToString(sum[:])})
	}
	_, addr := gatewaytest.Serve(b, "", gateway.Config{Auth: &gateway.AuthConfig{Identities: ids}, Mailboxes: boxes, Handler: engine})
	return &benchGateway{emb: emb, nc: nc, boxes: boxes, addr: addr}
}

// receiver is alice's client, counting the data frames that reach it.
func (g *benchGateway) receiver(b *testing.B, resume bool) (*gateway.Client, *atomic.Int64, chan struct{}) {
	var got atomic.Int64
	more := make(chan struct{}, 1)
	c, err := gateway.NewClient(gateway.ClientConfig{Addr: g.addr, Token: "alice", NoResume: !resume, Logger: slog.New(slog.DiscardHandler),
		OnMessage: func(m *protocol.Message) {
			if m.Type == protocol.TypeData {
				got.Add(1)
				select {
				case more <- struct{}{}:
				default:
				}
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Connect(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Disconnect("done") })
	return c, &got, more
}

// send makes n requests on route from benchSenders connections at once,
// each waiting for its replies in windows of 64.
func (g *benchGateway) send(b *testing.B, route string, n int) {
	var wg sync.WaitGroup
	for s := range benchSenders {
		c, err := gateway.NewClient(gateway.ClientConfig{Addr: g.addr, Token: "sender", NoResume: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Connect(b.Context()); err != nil {
			b.Fatal(err)
		}
		share := n / benchSenders
		if s < n%benchSenders {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Disconnect("done")
			for done := 0; done < share; {
				batch := min(64, share-done)
				replies := make(chan error, batch)
				for i := range batch {
					go func() {
						_, err := c.RequestMessage(context.Background(), protocol.Message{Type: protocol.TypeData, Route: route, Payload: fmt.Appendf(nil, `{"n":%d}`, done+i)})
						replies <- err
					}()
				}
				for range batch {
					if err := <-replies; err != nil {
						b.Error(err)
						return
					}
				}
				done += batch
			}
		}()
	}
	wg.Wait()
}

func waitFor(b *testing.B, got *atomic.Int64, more chan struct{}, want int64) {
	deadline := time.After(time.Minute)
	for got.Load() < want {
		select {
		case <-more:
		case <-deadline:
			b.Fatalf("%d of %d arrived", got.Load(), want)
		}
	}
}

// BenchmarkSendToLive: the at-most-once push to a connected agent.
func BenchmarkSendToLive(b *testing.B) { benchLive(b, "push", false) }

// BenchmarkDeliverLive: durable delivery to a connected, resuming agent
// that acks (the Go client's automatic, batched acks).
func BenchmarkDeliverLive(b *testing.B) { benchLive(b, "put", true) }

// benchLive sends b.N messages on route to alice, connected (resuming or
// not), and reports how many a second reached her.
func benchLive(b *testing.B, route string, resume bool) {
	g := startBenchGateway(b)
	_, got, more := g.receiver(b, resume)
	b.ResetTimer()
	start := time.Now()
	g.send(b, route, b.N)
	waitFor(b, got, more, int64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkDeliverAbsentThenDrain: durable delivery to an absent agent,
// then the agent connects and takes everything.
func BenchmarkDeliverAbsentThenDrain(b *testing.B) {
	g := startBenchGateway(b)
	b.ResetTimer()
	start := time.Now()
	g.send(b, "put", b.N)
	stored := time.Since(start)
	_, got, more := g.receiver(b, true)
	waitFor(b, got, more, int64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/stored.Seconds(), "stored/s")
}

// BenchmarkJetStreamLoop: what samgw's durable path is made of, done with
// nats.go directly on the same embedded server: benchSenders publishers
// (synchronous publishes, as gateway.deliver's), one consumer that acks
// every message (AckAll, acked as they come).
func BenchmarkJetStreamLoop(b *testing.B) {
	emb, err := delivery.StartEmbedded(delivery.EmbeddedConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := emb.Connect("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.CreateStream(b.Context(), jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := stream.CreateOrUpdateConsumer(b.Context(), jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckAllPolicy, MaxAckPending: 256})
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		m.Ack() //nolint:errcheck // a lost ack is redelivered
		if got.Add(1) == int64(b.N) {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for s := range benchSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < b.N; i += benchSenders {
				if _, err := js.Publish(context.Background(), "b.alice", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// TestAbsentAgentCostsNoHeapPerMessage stores 100,000 messages for an
// absent agent and measures the live heap (the embedded server's
// included, as it runs in the process) once the store's read caches have
// been let go.
func TestAbsentAgentCostsNoHeapPerMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 100,000 messages")
	}
	emb, err := delivery.StartEmbedded(delivery.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, _ := emb.Connect("test")
	defer nc.Close()
	boxes, err := delivery.New(t.Context(), delivery.Config{Conn: nc, MaxMessages: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	defer boxes.Close()
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// Warm up: the stream's first blocks and the connection's buffers.
	payload := []byte(`{"task":"summarise the quarterly report and send it to the finance team","n":1}`)
	for range 1000 {
		if _, err := boxes.Deliver(t.Context(), "absent", payload, delivery.DeliverOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := heap()
	const n = 100_000
	for range n {
		if _, err := boxes.Deliver(t.Context(), "absent", payload, delivery.DeliverOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if pending, _ := boxes.Pending("absent"); pending != n+1000 {
		t.Fatalf("pending %d", pending)
	}
	// The store keeps the newest blocks in a read cache that it lets go
	// 10 s after their last use: wait (up to 30 s) for the heap to come
	// back to what it was plus a bound far below the payload (what keeping
	// the messages in memory would cost), then report.
	written := heap()
	bound := before + n*uint64(len(payload))/8
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	after := written
	for after > bound && time.Now().Before(deadline) {
		<-tick.C
		after = heap()
	}
	perMessage := (float64(after) - float64(before)) / n
	t.Logf("heap before %d KiB; just after %d more messages %d KiB; once the store's cache expired %d KiB: %.1f bytes a message (payload %d bytes)",
		before>>10, n, written>>10, after>>10, perMessage, len(payload))
	if after > bound {
		t.Fatalf("%.1f heap bytes per waiting message after 30 s: the messages are kept in memory", perMessage)
	}
}
