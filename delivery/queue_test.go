package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// queueFixture is an embedded JetStream, the queues on it and a gateway
// whose connections (alice, bob, carol) can be made workers.
type queueFixture struct {
	t      *testing.T
	q      *Queues
	srv    *gateway.Server
	addr   string
	events chan JobEvent
}

func newQueueFixture(t *testing.T, cfg QueueConfig) *queueFixture {
	t.Helper()
	f := &queueFixture{t: t, events: make(chan JobEvent, 1000)}
	cfg.Conn = connectTo(t, startEmbedded(t), "test")
	cfg.OnEvent = func(e JobEvent) {
		select {
		case f.events <- e:
		default:
		}
	}
	var err error
	if f.q, err = NewQueues(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.q.Close)
	f.srv, f.addr = gatewaytest.Serve(t, "", gateway.Config{Auth: testAuth(), Jobs: f.q})
	return f
}

// worker connects as identity and joins queue with prefetch.
func (f *queueFixture) worker(identity, queue string, prefetch int) (*peer, *gateway.Conn) {
	f.t.Helper()
	p := dial(f.t, f.addr)
	p.send(&protocol.Message{Type: protocol.TypeAuth, ID: "a1", Payload: protocol.AppendAuthPayload(nil, identity+"-token")})
	if m := p.next(); m.Type != protocol.TypeAuth {
		f.t.Fatalf("auth: %s %s", m.Type, m.Payload)
	}
	var c *gateway.Conn
	testutil.Eventually(f.t, identity+"'s connection", func() bool {
		f.srv.Range(func(x *gateway.Conn) bool {
			if x.Identity() == identity {
				c = x
			}
			return c == nil
		})
		return c != nil
	})
	if err := f.q.Join(f.t.Context(), c, queue, prefetch); err != nil {
		f.t.Fatal(err)
	}
	return p, c
}

func (f *queueFixture) push(queue string, n int, opts PushOptions) []string {
	f.t.Helper()
	ids := make([]string, n)
	for i := range n {
		o := opts
		if o.ID != "" {
			o.ID = fmt.Sprint(opts.ID, i)
		}
		id, err := f.q.Push(f.t.Context(), queue, fmt.Appendf(nil, `{"n":%d}`, i), o)
		if err != nil {
			f.t.Fatalf("Push %d: %v", i, err)
		}
		ids[i] = id
	}
	return ids
}

// job reads the next frame, which must be a job of queue.
func (p *peer) job(queue string) *protocol.Message {
	p.t.Helper()
	m := p.next()
	if m.Type != protocol.TypeData || m.Job == "" || m.Route != queue {
		p.t.Fatalf("got %s route %q job %q %s, want a job of %s", m.Type, m.Route, m.Job, m.Payload, queue)
	}
	return m
}

func (p *peer) answer(typ protocol.Type, job string) {
	p.t.Helper()
	p.send(&protocol.Message{Type: typ, ID: "ans-" + job, Payload: protocol.AppendJobPayload(nil, job)})
}

// event waits for the next job event of kind.
func (f *queueFixture) event(kind string) JobEvent {
	f.t.Helper()
	timeout := time.NewTimer(testutil.WaitTimeout)
	defer timeout.Stop()
	for {
		select {
		case e := <-f.events:
			if e.Event == kind {
				return e
			}
		case <-timeout.C:
			f.t.Fatalf("no %s event", kind)
		}
	}
}

// TestQueueEachJobToOneWorker: 200 jobs over two workers with prefetch 4:
// each is delivered once, to one of them, and both get work.
func TestQueueEachJobToOneWorker(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{})
	a, _ := f.worker("alice", "tasks", 4)
	b, _ := f.worker("bob", "tasks", 4)
	const n = 200
	pushed := f.push("tasks", n, PushOptions{})
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	var total sync.WaitGroup
	total.Add(n)
	for name, p := range map[string]*peer{"alice": a, "bob": b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p.nc.SetReadDeadline(time.Now().Add(testutil.WaitTimeout))
				line, err := p.r.ReadBytes('\n')
				if err != nil {
					return // the test closed the connection: all done
				}
				var m protocol.Message
				if err := protocol.Decode(line[:len(line)-1], &m, protocol.Limits{}); err != nil || m.Job == "" {
					t.Errorf("%s got %q", name, line)
					return
				}
				mu.Lock()
				if other, dup := seen[m.Job]; dup {
					t.Errorf("job %s went to %s and %s", m.Job, other, name)
				}
				seen[m.Job] = name
				mu.Unlock()
				if _, err := p.nc.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendJobPayload(nil, m.Job)})); err != nil {
					return
				}
				total.Done()
			}
		}()
	}
	total.Wait()
	a.nc.Close()
	b.nc.Close()
	wg.Wait()
	per := map[string]int{}
	for _, id := range pushed {
		per[seen[id]]++
	}
	if per["alice"]+per["bob"] != n || per["alice"] == 0 || per["bob"] == 0 {
		t.Fatalf("jobs per worker: %v", per)
	}
	testutil.Eventually(t, "the queue to drain", func() bool {
		st, err := f.q.Stats(t.Context(), "tasks")
		return err == nil && st == QueueStats{}
	})
	t.Logf("jobs per worker: %v", per)
}

// TestQueueWorkerGoneJobReturns: a worker that disconnects with a job in
// flight (a lease of an hour) gives it back at once: another worker gets
// it.
func TestQueueWorkerGoneJobReturns(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{})
	a, _ := f.worker("alice", "tasks", 1)
	f.push("tasks", 1, PushOptions{ID: "only", Lease: time.Hour})
	first := a.job("tasks")
	b, _ := f.worker("bob", "tasks", 1)
	a.nc.Close()
	again := b.job("tasks")
	if again.Job != first.Job || again.Job != "only0" {
		t.Fatalf("bob got %q, alice had %q", again.Job, first.Job)
	}
	b.answer(protocol.TypeAck, again.Job)
	if e := f.event("acked"); e.Job != "only0" || e.Deliveries != 2 {
		t.Fatalf("event %+v", e)
	}
}

// TestQueueNackedJobGoesDead: a job nacked every time is delivered
// max_deliveries times, then moves to NAME.dead, where a worker of that
// queue gets it.
func TestQueueNackedJobGoesDead(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{})
	a, _ := f.worker("alice", "tasks", 1)
	f.push("tasks", 1, PushOptions{ID: "bad", MaxDeliveries: 3})
	for i := range 3 {
		m := a.job("tasks")
		if m.Job != "bad0" {
			t.Fatalf("delivery %d: %s", i+1, m.Job)
		}
		a.answer(protocol.TypeNack, m.Job)
	}
	if e := f.event("dead"); e.Job != "bad0" || e.Deliveries != 3 || e.Queue != "tasks" {
		t.Fatalf("event %+v", e)
	}
	testutil.Eventually(t, "the dead count", func() bool {
		st, err := f.q.Stats(t.Context(), "tasks")
		return err == nil && st.Dead == 1 && st.Pending == 0 && st.InFlight == 0
	})
	d, _ := f.worker("bob", "tasks.dead", 1)
	if m := d.job("tasks.dead"); m.Job != "bad0" || string(m.Payload) != `{"n":0}` {
		t.Fatalf("the dead queue holds %s %s", m.Job, m.Payload)
	}
	a.pingPong() // no fourth delivery reached alice
}

// TestQueueLeaseRunsOut: a job held past its lease comes back for another
// delivery; one whose worker says progress keeps its lease.
func TestQueueLeaseRunsOut(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{})
	a, _ := f.worker("alice", "tasks", 1)
	start := time.Now()
	f.push("tasks", 1, PushOptions{ID: "slow", Lease: 300 * time.Millisecond})
	m := a.job("tasks")
	if e := f.event("expired"); e.Job != "slow0" || e.Worker == "" {
		t.Fatalf("event %+v", e)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("expired after %v, before its lease", took)
	}
	again := a.job("tasks")
	if again.Job != m.Job {
		t.Fatalf("redelivered %q, want %q", again.Job, m.Job)
	}
	a.answer(protocol.TypeAck, again.Job)
	if e := f.event("acked"); e.Deliveries != 2 {
		t.Fatalf("event %+v", e)
	}
}

// TestQueueDelay: a delayed job reaches no worker before its time.
func TestQueueDelay(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{})
	a, _ := f.worker("alice", "tasks", 1)
	start := time.Now()
	f.push("tasks", 1, PushOptions{ID: "later", Delay: 400 * time.Millisecond})
	m := a.job("tasks")
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("delivered after %v", took)
	}
	a.answer(protocol.TypeAck, m.Job)
	if e := f.event("acked"); e.Deliveries != 1 {
		t.Fatalf("a delayed job counts its wait as a delivery: %+v", e)
	}
}

// TestQueueBadInput: answers for jobs a connection does not hold, bad
// payloads, bad names and too many queues are refused; the connection
// stays usable.
func TestQueueBadInput(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{MaxPayload: 1000})
	a, ac := f.worker("alice", "tasks", 1)
	b, _ := f.worker("bob", "other", 1)
	f.push("tasks", 1, PushOptions{ID: "mine"})
	m := a.job("tasks")
	for _, tc := range []struct {
		who   *peer
		frame string
		want  string
	}{
		{b, `{"type":"ack","id":"x1","payload":{"job":"` + m.Job + `"}}`, "holds no such job"}, // alice's
		{a, `{"type":"ack","id":"x2","payload":{"job":"nope"}}`, "holds no such job"},
		{a, `{"type":"nack","id":"x3","payload":{}}`, "a nack needs a payload"},
		{a, `{"type":"progress","id":"x4","payload":{"job":5}}`, "job must be a string"},
		{a, `{"type":"ack","id":"x5","payload":{"job":""}}`, "job must be a string"},
	} {
		tc.who.sendRaw(tc.frame)
		e := tc.who.next()
		if e.Type != protocol.TypeError || !strings.Contains(string(e.Payload), `"code":"invalid_message"`) || !strings.Contains(string(e.Payload), tc.want) {
			t.Fatalf("%s: %s %s", tc.frame, e.Type, e.Payload)
		}
		tc.who.pingPong()
	}
	a.answer(protocol.TypeAck, m.Job) // still alice's to ack
	if e := f.event("acked"); e.Job != "mine0" {
		t.Fatalf("event %+v", e)
	}
	for _, name := range []string{"", "a..b", "a b", "tasks.>", strings.Repeat("x", MaxQueueName+1)} {
		if _, err := f.q.Push(t.Context(), name, []byte(`1`), PushOptions{}); !errors.Is(err, ErrInvalidQueue) {
			t.Errorf("Push to %q: %v", name, err)
		}
	}
	for _, o := range []PushOptions{{Lease: -1}, {Lease: MaxLease + 1}, {MaxDeliveries: MaxDeliveriesLimit + 1}, {Delay: -time.Second}, {ID: strings.Repeat("i", 257)}} {
		if _, err := f.q.Push(t.Context(), "tasks", []byte(`1`), o); !errors.Is(err, ErrInvalid) {
			t.Errorf("Push with %+v: %v", o, err)
		}
	}
	if _, err := f.q.Push(t.Context(), "tasks", []byte(`"`+strings.Repeat("x", 1000)+`"`), PushOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a payload over the bound: %v", err)
	}
	var err error
	for i := range MaxQueuesPerWorker + 10 {
		if err = f.q.Join(t.Context(), ac, fmt.Sprint("q", i), 1); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrTooManyQueues) {
		t.Fatalf("joining %d queues: %v", MaxQueuesPerWorker+10, err)
	}
	f.q.mu.Lock()
	joined := len(f.q.workers[ac.ID()].members)
	f.q.mu.Unlock()
	if joined != MaxQueuesPerWorker {
		t.Fatalf("alice is in %d queues", joined)
	}
}

// TestQueueDedupe: the same id within the window is stored once.
func TestQueueDedupe(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{})
	for range 3 {
		if id, err := f.q.Push(t.Context(), "tasks", []byte(`1`), PushOptions{ID: "same"}); err != nil || id != "same" {
			t.Fatalf("Push: %q %v", id, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), testutil.WaitTimeout)
	defer cancel()
	if st, err := f.q.Stats(ctx, "tasks"); err != nil || st.Pending != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
}

// TestClientWorker: the Go client's OnJob acks what its handler returns,
// nacks what fails (the job comes back), and keeps a long job's lease
// with progress frames.
func TestClientWorker(t *testing.T) {
	f := newQueueFixture(t, QueueConfig{})
	var mu sync.Mutex
	handled := map[string]int{}
	cl, err := gateway.NewClient(gateway.ClientConfig{Addr: f.addr, Token: "alice-token", NoResume: true,
		JobProgressEvery: 100 * time.Millisecond, Logger: quietLogger(),
		OnJob: func(ctx context.Context, job gateway.Job) error {
			mu.Lock()
			handled[job.ID]++
			n := handled[job.ID]
			mu.Unlock()
			switch {
			case job.ID == "bad" && n == 1:
				return errors.New("not this time")
			case job.ID == "long":
				select { // work that outlasts the lease three times over
				case <-time.After(3 * time.Second):
				case <-ctx.Done():
				}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect("done")
	var c *gateway.Conn
	testutil.Eventually(t, "alice's connection", func() bool {
		f.srv.Range(func(x *gateway.Conn) bool { c = x; return false })
		return c != nil
	})
	if err := f.q.Join(t.Context(), c, "tasks", 4); err != nil {
		t.Fatal(err)
	}
	f.push("tasks", 20, PushOptions{ID: "ok-"})
	if _, err := f.q.Push(t.Context(), "tasks", []byte(`1`), PushOptions{ID: "bad"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.Push(t.Context(), "tasks", []byte(`2`), PushOptions{ID: "long", Lease: time.Second}); err != nil {
		t.Fatal(err)
	}
	acked := map[string]uint64{}
	timeout := time.After(testutil.WaitTimeout)
	for len(acked) < 22 {
		select {
		case e := <-f.events:
			switch e.Event {
			case "acked":
				acked[e.Job] = e.Deliveries
			case "expired":
				t.Fatalf("job %s expired: its progress did not keep the lease", e.Job)
			}
		case <-timeout:
			t.Fatalf("acked %d of 22", len(acked))
		}
	}
	if acked["bad"] != 2 || acked["long"] != 1 || acked["ok-7"] != 1 {
		t.Fatalf("deliveries when acked: bad %d (want 2), long %d, ok-7 %d (want 1)", acked["bad"], acked["long"], acked["ok-7"])
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
