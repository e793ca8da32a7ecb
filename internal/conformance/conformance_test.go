package conformance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// stepTimeout bounds every wait of a step.
const stepTimeout = 15 * time.Second

// TestGoClientConformance runs steps.json with the Go client against real
// samgw serve processes, as the TypeScript and Python suites do.
func TestGoClientConformance(t *testing.T) {
	steps, err := Steps()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	bin, err := BuildSamgw(ctx, "../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedWriter{}
	servers, err := Start(ctx, bin, dir, "scripts", logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(servers.Close)
	r := &goRunner{servers: servers}
	t.Cleanup(r.close)
	for i, step := range steps {
		if err := r.run(ctx, step); err != nil {
			t.Fatalf("step %d %s: %v\nserver logs:\n%s", i+1, step.Step, err, logs.String())
		}
	}
}

// goRunner runs steps with one gateway.Client at a time.
type goRunner struct {
	servers *Servers
	client  *gateway.Client
	nextReq int

	mu       sync.Mutex
	requests map[string]bool // ids of this runner's requests: their replies are not data
	inbox    []*protocol.Message
	changed  chan struct{} // closed and replaced when inbox or connected changes
	up       bool
	lastSeq  uint64         // of the last mailbox message received
	attempts map[string]int // jobs handled, by id
	jobsDone map[string]bool
	offsets  map[string]uint64 // the last offset seen, by topic
	renewals map[string][]bool // recovered, of each renewal answered, by topic
}

func (r *goRunner) run(ctx context.Context, s Step) error {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	switch s.Step {
	case "connect":
		return r.connect(ctx, s)
	case "request":
		return r.request(ctx, s)
	case "send":
		_, err := r.client.SendMessage(protocol.Message{Type: protocol.TypeData, Route: s.Route, Payload: s.Payload})
		return err
	case "ping":
		_, err := r.client.PingWait(ctx)
		return err
	case "expect_data":
		return r.expectData(ctx, s)
	case "stop_server":
		return r.servers.StopServer(s.Server)
	case "start_server":
		return r.servers.StartServer(ctx, s.Server)
	case "wait_disconnected", "wait_connected":
		want := s.Step == "wait_connected"
		return r.wait(ctx, func() bool { return r.up == want })
	case "disconnect":
		err := r.client.Disconnect(s.Reason)
		r.client = nil
		return err
	case "deliver":
		return r.deliver(ctx, s)
	case "expect_jobs":
		return r.expectJobs(ctx, s)
	case "subscribe":
		_, err := r.client.Subscribe(ctx, s.Topic)
		return err
	case "expect_resubscribed":
		return r.expectResubscribed(ctx, s)
	case "ack_last":
		r.mu.Lock()
		seq := r.lastSeq
		r.mu.Unlock()
		return r.client.Ack(seq)
	}
	return fmt.Errorf("unknown step %q", s.Step)
}

func (r *goRunner) connect(ctx context.Context, s Step) error {
	fix := r.servers.Fixture
	r.mu.Lock()
	r.requests, r.inbox, r.up = make(map[string]bool), nil, false
	r.attempts, r.jobsDone = make(map[string]int), make(map[string]bool)
	r.offsets, r.renewals = make(map[string]uint64), make(map[string][]bool)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	cfg := gateway.ClientConfig{
		Addr:       fix.Servers[s.Server],
		Token:      fix.Tokens[s.Token],
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		OnMessage:     r.onMessage,
		OnConnect:     func() { r.setUp(true) },
		OnDisconnect:  func(string) { r.setUp(false) },
		OnResubscribe: r.onResubscribe,
		ManualAck:     s.ManualAck,
		Compress:      s.Compress,
	}
	if s.Worker {
		cfg.OnJob = r.onJob
	}
	if s.Cert != "" {
		tlsCfg, err := gateway.NewClientTLSConfig(gateway.ClientTLS{CAFile: fix.CA, CertFile: fix.Certs[s.Cert].Cert, KeyFile: fix.Certs[s.Cert].Key})
		if err != nil {
			return err
		}
		cfg.TLS = tlsCfg
	}
	if s.Sign != "" {
		key, err := readSignKey(fix.SignKeys[s.Sign])
		if err != nil {
			return err
		}
		cfg.SignKey = key
	}
	c, err := gateway.NewClient(cfg)
	if err != nil {
		return err
	}
	err = c.Connect(ctx)
	if s.ExpectError != "" {
		return wantCode(err, s.ExpectError)
	}
	if err != nil {
		return err
	}
	r.client = c
	if s.ExpectPending != nil {
		if resumed, pending := c.Resumed(); !resumed || pending != uint64(*s.ExpectPending) {
			return fmt.Errorf("mailbox: resumed %v, pending %d; want resumed, pending %d", resumed, pending, *s.ExpectPending)
		}
	}
	return nil
}

// deliver leaves s.Payload in the mailbox of s.To through route "leave":
// the answer is the seq, a positive integer.
func (r *goRunner) deliver(ctx context.Context, s Step) error {
	body, err := json.Marshal(map[string]any{"to": s.To, "id": s.ID, "body": s.Payload})
	if err != nil {
		return err
	}
	r.nextReq++
	id := "conformance-" + strconv.Itoa(r.nextReq)
	r.mu.Lock()
	r.requests[id] = true
	r.mu.Unlock()
	reply, err := r.client.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, ID: id, Route: "leave", Payload: body})
	if s.ExpectError != "" {
		return wantCode(err, s.ExpectError)
	}
	if err != nil {
		return err
	}
	if seq, err := strconv.ParseUint(string(reply.Payload), 10, 64); err != nil || seq == 0 {
		return fmt.Errorf("deliver answered %s, want a seq", reply.Payload)
	}
	return nil
}

func (r *goRunner) request(ctx context.Context, s Step) error {
	r.nextReq++
	id := "conformance-" + strconv.Itoa(r.nextReq)
	r.mu.Lock()
	r.requests[id] = true
	r.mu.Unlock()
	reply, err := r.client.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, ID: id, Route: s.Route, Payload: s.Payload})
	if s.ExpectError != "" {
		return wantCode(err, s.ExpectError)
	}
	if err != nil {
		return err
	}
	return sameJSON(reply.Payload, s.ExpectReply)
}

// onMessage keeps data frames that answer none of the runner's requests.
func (r *goRunner) onMessage(m *protocol.Message) {
	if m.Type != protocol.TypeData {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requests[m.ID] || m.Route == gateway.DefaultTopicRoute { // answers to requests and to the client's subscribe
		return
	}
	r.inbox = append(r.inbox, m.Clone())
	if m.Seq != 0 {
		r.lastSeq = m.Seq
	}
	r.notifyLocked()
}

// onJob is the worker's handler: it fails (nacks) the first try of a job
// whose payload has fail_once.
func (r *goRunner) onJob(_ context.Context, job gateway.Job) error {
	var p struct {
		FailOnce bool `json:"fail_once"`
	}
	json.Unmarshal(job.Payload, &p) //nolint:errcheck // any payload is a job
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[job.ID]++
	if p.FailOnce && r.attempts[job.ID] == 1 {
		return errors.New("fail_once")
	}
	r.jobsDone[job.ID] = true
	r.notifyLocked()
	return nil
}

// expectJobs waits for the jobs of s.IDs to be handled and checks how
// many times each was.
func (r *goRunner) expectJobs(ctx context.Context, s Step) error {
	err := r.wait(ctx, func() bool {
		for _, id := range s.IDs {
			if !r.jobsDone[id] {
				return false
			}
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: handled %v", err, r.attempts)
	}
	for id, n := range s.Attempts {
		if r.attempts[id] != n {
			return fmt.Errorf("job %s handled %d times, want %d (all: %v)", id, r.attempts[id], n, r.attempts)
		}
	}
	return nil
}

func (r *goRunner) setUp(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up = up
	r.notifyLocked()
}

func (r *goRunner) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait waits until cond (called with r.mu held) holds.
func (r *goRunner) wait(ctx context.Context, cond func() bool) error {
	for {
		r.mu.Lock()
		ok, changed := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting: %w", ctx.Err())
		}
	}
}

func (r *goRunner) expectData(ctx context.Context, s Step) error {
	if err := r.wait(ctx, func() bool { return len(r.inbox) >= len(s.Payloads) }); err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		return fmt.Errorf("%w: %d of %d data frames arrived", err, len(r.inbox), len(s.Payloads))
	}
	r.mu.Lock()
	got := r.inbox[:len(s.Payloads)]
	r.inbox = r.inbox[len(s.Payloads):]
	r.mu.Unlock()
	for i, m := range got {
		if s.Route != "" && m.Route != s.Route {
			return fmt.Errorf("data frame %d: route %q, want %q", i+1, m.Route, s.Route)
		}
		if err := sameJSON(m.Payload, s.Payloads[i]); err != nil {
			return fmt.Errorf("data frame %d: %w", i+1, err)
		}
		if s.Topic != "" {
			if m.Topic != s.Topic || m.Offset <= r.offsets[s.Topic] {
				return fmt.Errorf("data frame %d: topic %q offset %d, want a publication of %q after offset %d", i+1, m.Topic, m.Offset, s.Topic, r.offsets[s.Topic])
			}
			r.offsets[s.Topic] = m.Offset
		}
		if s.IDs != nil && (m.ID != s.IDs[i] || m.Seq == 0) {
			return fmt.Errorf("data frame %d: id %q seq %d, want mailbox message %q", i+1, m.ID, m.Seq, s.IDs[i])
		}
	}
	return nil
}

// onResubscribe records the answer to a renewal of a subscription.
func (r *goRunner) onResubscribe(topic string, reply *protocol.Message, err error) {
	var p struct{ Recovered bool }
	if err == nil {
		json.Unmarshal(reply.Payload, &p) //nolint:errcheck // a bad answer counts as not recovered
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.renewals[topic] = append(r.renewals[topic], p.Recovered)
	r.notifyLocked()
}

// expectResubscribed waits for the next renewal of s.Topic and checks its
// recovered.
func (r *goRunner) expectResubscribed(ctx context.Context, s Step) error {
	if err := r.wait(ctx, func() bool { return len(r.renewals[s.Topic]) > 0 }); err != nil {
		return fmt.Errorf("%w: no renewal of %s", err, s.Topic)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.renewals[s.Topic][0]
	r.renewals[s.Topic] = r.renewals[s.Topic][1:]
	if s.Recovered != nil && got != *s.Recovered {
		return fmt.Errorf("renewal of %s: recovered %v, want %v", s.Topic, got, *s.Recovered)
	}
	return nil
}

func (r *goRunner) close() {
	if r.client != nil {
		r.client.Disconnect("test over") //nolint:errcheck // cleanup
	}
}

// wantCode checks that err carries a protocol error with code.
func wantCode(err error, code string) error {
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		return fmt.Errorf("got %v, want an error with code %s", err, code)
	}
	if string(perr.Code) != code {
		return fmt.Errorf("got code %s (%v), want %s", perr.Code, err, code)
	}
	return nil
}

// sameJSON compares two JSON texts by value.
func sameJSON(got, want json.RawMessage) error {
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("payload %s: %w", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		return fmt.Errorf("expected %s: %w", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		return fmt.Errorf("payload %s, want %s", got, want)
	}
	return nil
}

func readSignKey(file string) (ed25519.PrivateKey, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return gateway.ParseSignKey(src)
}

// lockedWriter serialises the two server processes' log writes.
type lockedWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
