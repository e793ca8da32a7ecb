package delivery_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
)

// The work queue benchmarks: jobs end to end (push, delivery to one of 16
// workers over real sockets, ack) on one node and on three nodes sharing
// the embedded JetStream, and the same work done directly with nats.go on
// a work-queue stream with 16 pull workers. Each reports jobs/s.

const (
	benchWorkers  = 16
	benchPrefetch = 4
	benchPushers  = 16
)

// BenchmarkQueueJobs: one node.
func BenchmarkQueueJobs(b *testing.B) { benchQueue(b, 1) }

// BenchmarkQueueJobsThreeNodes: three nodes (gateways with queues of their
// own) on one JetStream, the workers spread over them.
func BenchmarkQueueJobsThreeNodes(b *testing.B) { benchQueue(b, 3) }

func benchQueue(b *testing.B, nodes int) {
	emb, err := delivery.StartEmbedded(delivery.EmbeddedConfig{Dir: filepath.Join(b.TempDir(), "data")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emb.Shutdown)
	sum := sha256.Sum256([]byte("worker"))
	ids := []gateway.Identity{{Name: "worker", TokenSHA256: hex.EncodeToString(sum[:])}}
	queues := make([]*delivery.Queues, nodes)
	servers := make([]*gateway.Server, nodes)
	addrs := make([]string, nodes)
	for i := range nodes {
		nc, err := emb.Connect(fmt.Sprint("node-", i))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		if queues[i], err = delivery.NewQueues(b.Context(), delivery.QueueConfig{Conn: nc, Logger: slog.New(slog.DiscardHandler)}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(queues[i].Close)
		servers[i], addrs[i] = gatewaytest.Serve(b, "", gateway.Config{Auth: &gateway.AuthConfig{Identities: ids}, Jobs: queues[i]})
	}
	var done atomic.Int64
	more := make(chan struct{}, 1)
	for w := range benchWorkers {
		node := w % nodes
		cl, err := gateway.NewClient(gateway.ClientConfig{Addr: addrs[node], Token: "worker", NoResume: true, Logger: slog.New(slog.DiscardHandler),
			OnJob: func(context.Context, gateway.Job) error {
				done.Add(1)
				select {
				case more <- struct{}{}:
				default:
				}
				return nil
			}})
		if err != nil {
			b.Fatal(err)
		}
		if err := cl.Connect(b.Context()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cl.Disconnect("done") })
	}
	joined := 0
	for i, srv := range servers {
		srv.Range(func(c *gateway.Conn) bool {
			if err := queues[i].Join(b.Context(), c, "bench", benchPrefetch); err != nil {
				b.Fatal(err)
			}
			joined++
			return true
		})
	}
	if joined != benchWorkers {
		b.Fatalf("%d workers joined, want %d", joined, benchWorkers)
	}
	payload := []byte(`{"task":"summarise","text":"` + fmt.Sprintf("%0100d", 0) + `"}`)
	b.ResetTimer()
	start := time.Now()
	pushAll(b, b.N, func(ctx context.Context) error {
		_, err := queues[0].Push(ctx, "bench", payload, delivery.PushOptions{})
		return err
	})
	waitJobs(b, &done, more, int64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkJetStreamWorkQueue: the same work on nats.go alone: a
// work-queue stream, one durable pull consumer, 16 workers pulling 4 at a
// time and acking each message.
func BenchmarkJetStreamWorkQueue(b *testing.B) {
	emb, err := delivery.StartEmbedded(delivery.EmbeddedConfig{Dir: filepath.Join(b.TempDir(), "data")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emb.Shutdown)
	nc, err := emb.Connect("bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WQ", Subjects: []string{"wq.>"}, Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "WQ", jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	more := make(chan struct{}, 1)
	for range benchWorkers {
		wnc, err := emb.Connect("worker")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(wnc.Close)
		wjs, _ := jetstream.New(wnc)
		wc, err := wjs.Consumer(ctx, "WQ", "workers")
		if err != nil {
			b.Fatal(err)
		}
		cc, err := wc.Consume(func(m jetstream.Msg) {
			m.Ack() //nolint:errcheck // as a worker would
			done.Add(1)
			select {
			case more <- struct{}{}:
			default:
			}
		}, jetstream.PullMaxMessages(benchPrefetch))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cc.Stop)
	}
	_ = cons
	payload := []byte(`{"task":"summarise","text":"` + fmt.Sprintf("%0100d", 0) + `"}`)
	b.ResetTimer()
	start := time.Now()
	pushAll(b, b.N, func(ctx context.Context) error {
		msg := nats.NewMsg("wq.bench")
		msg.Data = payload
		_, err := js.PublishMsg(ctx, msg)
		return err
	})
	waitJobs(b, &done, more, int64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// pushAll pushes n jobs from benchPushers goroutines.
func pushAll(b *testing.B, n int, push func(context.Context) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range benchPushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := push(b.Context()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// waitJobs waits until want jobs were handled.
func waitJobs(b *testing.B, done *atomic.Int64, more chan struct{}, want int64) {
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for done.Load() < want {
		select {
		case <-more:
		case <-timeout.C:
			b.Fatalf("%d of %d jobs handled", done.Load(), want)
		}
	}
}
