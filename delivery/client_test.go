package delivery

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// collector gathers the mailbox messages a Client passes on.
type collector struct {
	mu   sync.Mutex
	seqs []uint64
	ids  []string
	more chan struct{}
}

func newCollector() *collector { return &collector{more: make(chan struct{}, 1)} }

func (c *collector) onMessage(m *protocol.Message) {
	if m.Seq == 0 {
		return
	}
	c.mu.Lock()
	c.seqs = append(c.seqs, m.Seq)
	c.ids = append(c.ids, m.ID)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs)
}

func (f *fixture) client(cfg gateway.ClientConfig) *gateway.Client {
	f.t.Helper()
	cfg.Addr = f.addr
	cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 20*time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := gateway.NewClient(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.t.Context(), testutil.WaitTimeout)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Disconnect("test over") })
	return c
}

func TestGoClientResumesAndAcksAutomatically(t *testing.T) {
	f := newFixture(t, Config{})
	seqs := f.deliver("alice", 300)
	got := newCollector()
	c := f.client(gateway.ClientConfig{Token: "alice-token", OnMessage: got.onMessage})
	if resumed, pending := c.Resumed(); !resumed || pending != 300 {
		t.Fatalf("Resumed() = %v, %d; want true, 300", resumed, pending)
	}
	testutil.Eventually(t, "300 messages", func() bool { return got.count() == 300 })
	for i, seq := range got.seqs {
		if seq != seqs[i] {
			t.Fatalf("message %d: seq %d, want %d", i, seq, seqs[i])
		}
	}
	// Acked without being asked: the mailbox empties.
	f.waitApplied("alice", 0)

	// A client that asks not to resume gets no mailbox.
	plain := f.client(gateway.ClientConfig{Token: "bob-token", NoResume: true})
	if resumed, _ := plain.Resumed(); resumed {
		t.Fatal("NoResume client resumed")
	}
}

func TestGoClientDropsWhatComesAgainAfterAReconnect(t *testing.T) {
	f := newFixture(t, Config{})
	f.deliver("alice", 3)
	got := newCollector()
	connects := make(chan struct{}, 4)
	c := f.client(gateway.ClientConfig{Token: "alice-token", ManualAck: true, OnMessage: got.onMessage,
		OnConnect: func() { connects <- struct{}{} }})
	<-connects
	testutil.Eventually(t, "3 messages", func() bool { return got.count() == 3 })
	// Not acked: the server closes the connection, the client comes back
	// and the three are delivered again, and dropped as duplicates.
	for _, in := range f.srv.Connections() {
		f.srv.Conn(in.ID).Close("test: drop")
	}
	select {
	case <-connects:
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("no reconnect")
	}
	testutil.Eventually(t, "the redelivered three", func() bool { _, pending := c.Resumed(); return pending == 3 })
	next := f.deliver("alice", 1)
	testutil.Eventually(t, "the fourth", func() bool { return got.count() == 4 })
	if got.seqs[3] != next[0] {
		t.Fatalf("OnMessage saw %v, want the three once and then %d", got.seqs, next[0])
	}
	if err := c.Ack(next[0]); err != nil {
		t.Fatal(err)
	}
	f.waitApplied("alice", 0)
}
