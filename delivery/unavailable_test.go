package delivery

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// startNATS runs a NATS server with JetStream on a loopback port, as an
// external cluster would be.
func startNATS(t *testing.T, dir string) *natsserver.Server {
	t.Helper()
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func TestStoreUnavailable(t *testing.T) {
	ns := startNATS(t, t.TempDir())
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	boxes, err := New(t.Context(), Config{Conn: nc, Timeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(boxes.Close)
	f := &fixture{t: t, boxes: boxes}
	f.srv, f.addr = serveGateway(t, boxes)
	seqs := f.deliver("alice", 2)
	live, _ := f.connect("alice", true)
	live.data(2)

	if err := boxes.Healthy(); err != nil {
		t.Fatalf("Healthy with NATS up: %v", err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	// The client notices the loss when its connection reports it.
	testutil.Eventually(t, "Healthy to report the store unavailable", func() bool { return errors.Is(boxes.Healthy(), ErrUnavailable) })
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := boxes.Deliver(ctx, "alice", []byte(`3`), DeliverOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Deliver with NATS down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Deliver with NATS down took %v, want about its context's 500ms", d)
	}
	// Existing connections keep working; acks are kept until the store
	// is back.
	live.pingPong()
	live.ack(seqs[1])
	live.pingPong()
	// A new connection that asks to resume is served without its mailbox,
	// and the reply says so.
	p, reply := f.connect("alice", true)
	if resumed, _ := protocol.ParseAuthReplyResume(reply); resumed {
		t.Fatalf("auth reply %s with the store down", reply)
	}
	p.pingPong()
}

func TestMessagesSurviveARestartOfTheEmbeddedServer(t *testing.T) {
	dir := t.TempDir()
	emb, err := StartEmbedded(EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartEmbedded(EmbeddedConfig{Dir: dir}); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second server on the same data directory: %v, want ErrDataDirInUse", err)
	}
	nc, _ := emb.Connect("test")
	boxes, err := New(t.Context(), Config{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := range 20 {
		seq, err := boxes.Deliver(t.Context(), "alice", []byte{'0' + byte(i%10)}, DeliverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	boxes.Close()
	nc.Close()
	emb.Shutdown()

	f := &fixture{t: t}
	if f.emb, err = StartEmbedded(EmbeddedConfig{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.emb.Shutdown)
	nc, _ = f.emb.Connect("test")
	t.Cleanup(nc.Close)
	if f.boxes, err = New(t.Context(), Config{Conn: nc}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.boxes.Close)
	f.srv, f.addr = serveGateway(t, f.boxes)
	p, reply := f.connect("alice", true)
	if _, pending := protocol.ParseAuthReplyResume(reply); pending != 20 {
		t.Fatalf("after a restart: %s, want pending 20", reply)
	}
	for i, m := range p.data(20) {
		if m.Seq != seqs[i] {
			t.Fatalf("seq %d want %d", m.Seq, seqs[i])
		}
	}
}
