package delivery

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/gateway"
)

// Work queues: a job pushed to a queue reaches exactly one of its workers,
// which acks it (done), nacks it (another delivery) or lets its lease run
// out (another delivery); after its most deliveries it moves to the queue
// NAME.dead. The store is one JetStream work-queue stream (a subject per
// queue) and one durable pull consumer per queue, shared by every node:
// JetStream hands each job to one node at a time, and a node hands it to
// one of its workers. What samgw adds is per job: its lease, its most
// deliveries and its delay, carried in headers.

// Errors of the queues, to test with errors.Is.
var (
	// ErrInvalidQueue: not a queue name.
	ErrInvalidQueue = errors.New("delivery: invalid queue name")
	// ErrTooManyQueues: the worker is in its most queues.
	ErrTooManyQueues = errors.New("delivery: too many queues for one worker")
)

// Defaults and bounds of the queues.
const (
	DefaultQueueStream   = "SAMGW_QUEUES"
	DefaultLease         = 30 * time.Second
	DefaultMaxDeliveries = 5
	DefaultPrefetch      = 1
	DefaultNodeTimeout   = 30 * time.Second
	MaxLease             = 24 * time.Hour
	MaxDelay             = 365 * 24 * time.Hour
	MaxDeliveriesLimit   = 1000
	MaxPrefetch          = 256
	MaxQueuesPerWorker   = 64
	MaxQueueName         = 128
	// queuePrefix opens every queue's subject.
	queuePrefix = "samgw.queue."
)

// Headers of a job.
const (
	headerJob        = "Samgw-Job"
	headerLease      = "Samgw-Lease-Ms"
	headerMaxDeliver = "Samgw-Max-Deliveries"
	headerNotBefore  = "Samgw-Not-Before"
	headerDeadFrom   = "Samgw-Dead-From"
)

// QueueConfig configures Queues. Zero values mean the defaults.
type QueueConfig struct {
	// Conn reaches JetStream, as Config.Conn. Required.
	Conn     *nats.Conn
	Stream   string
	Replicas int
	// MaxAge is how long a job waits for a worker before it expires.
	MaxAge time.Duration
	// MaxBytes bounds the jobs of every queue together.
	MaxBytes int64
	// DedupeWindow: a Push with the id of one pushed within it stores
	// nothing.
	DedupeWindow time.Duration
	// NodeTimeout is how long the jobs a node holds stay with it after it
	// stops answering (it was killed, or lost NATS): then they go to
	// another node. A live node keeps its jobs for their leases.
	NodeTimeout time.Duration
	// MaxPayload is the largest job payload a Push takes (0: the store's
	// limit only): a job must fit in the frame that hands it to a worker.
	MaxPayload int
	// OnEvent, when set, is told of each job that is acked, nacked,
	// expired or dead-lettered. It is called on the queues' goroutines:
	// it must not block for long.
	OnEvent func(JobEvent)
	Timeout time.Duration // bounds store calls made for a worker (joining)
	Logger  *slog.Logger
}

// JobEvent is something that happened to a job.
type JobEvent struct {
	Event      string // "acked", "nacked", "expired", "dead"
	Queue      string
	Job        string
	Worker     string // the connection that held it ("" for dead)
	Deliveries uint64 // how many times it was delivered
}

// PushOptions are the optional parts of a job.
type PushOptions struct {
	// ID is the job's id; a Push with the id of one pushed within the
	// dedupe window stores nothing (and returns the id). Without one, a
	// random id is made.
	ID string
	// Lease is how long a worker holds it without an answer before it goes
	// back to the queue (DefaultLease).
	Lease time.Duration
	// MaxDeliveries is how many times it is delivered before it moves to
	// the queue NAME.dead (DefaultMaxDeliveries).
	MaxDeliveries int
	// Delay holds it back that long before its first delivery.
	Delay time.Duration
}

// QueueStats describe a queue.
type QueueStats struct {
	Pending  uint64 // waiting for a worker
	InFlight uint64 // held by workers, not yet answered
	Dead     uint64 // in NAME.dead
}

// Queues are the work queues. They implement gateway.Jobs. Their methods
// are safe for concurrent use.
type Queues struct {
	cfg    QueueConfig
	js     jetstream.JetStream
	stream jetstream.Stream

	mu      sync.Mutex
	pools   map[string]*pool         // queues with workers on this node
	workers map[string]*workerQueues // by connection id
	closed  bool
}

// workerQueues is one worker's memberships.
type workerQueues struct {
	w       gateway.JobWorker
	members map[string]*member // by queue
}

// NewQueues creates (or updates) the queue stream.
func NewQueues(ctx context.Context, cfg QueueConfig) (*Queues, error) {
	if cfg.Conn == nil {
		return nil, fmt.Errorf("%w: Conn is required", ErrInvalidConfig)
	}
	cfg.Stream = cmp.Or(cfg.Stream, DefaultQueueStream)
	cfg.Replicas = cmp.Or(cfg.Replicas, 1)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, DefaultMaxBytes)
	cfg.DedupeWindow = cmp.Or(cfg.DedupeWindow, DefaultDedupeWindow)
	cfg.NodeTimeout = cmp.Or(cfg.NodeTimeout, DefaultNodeTimeout)
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "samgw work queues: one subject per queue",
		Subjects:    []string{queuePrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		Discard:     jetstream.DiscardNew,
		Duplicates:  cfg.DedupeWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("delivery: create stream %s: %w", cfg.Stream, err)
	}
	return &Queues{cfg: cfg, js: js, stream: stream, pools: map[string]*pool{}, workers: map[string]*workerQueues{}}, nil
}

// ValidQueue reports whether name is a queue name: dot-separated words of
// [A-Za-z0-9_-], at most MaxQueueName bytes.
func ValidQueue(name string) bool {
	if name == "" || len(name) > MaxQueueName {
		return false
	}
	word := 0
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '.':
			if word == 0 {
				return false
			}
			word = 0
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-':
			word++
		default:
			return false
		}
	}
	return word > 0
}

func queueSubject(name string) string { return queuePrefix + name }

// consumerName is the durable consumer of a queue: names may not hold dots.
func consumerName(name string) string {
	return "q_" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// Push adds a job to queue name and returns its id once the store has it.
func (q *Queues) Push(ctx context.Context, name string, payload []byte, opts PushOptions) (string, error) {
	if !ValidQueue(name) {
		return "", fmt.Errorf("%w: %q", ErrInvalidQueue, clipName(name))
	}
	switch {
	case opts.Lease < 0 || opts.Lease > MaxLease:
		return "", fmt.Errorf("%w: lease %v: want up to %v", ErrInvalid, opts.Lease, MaxLease)
	case opts.MaxDeliveries < 0 || opts.MaxDeliveries > MaxDeliveriesLimit:
		return "", fmt.Errorf("%w: max_deliveries %d: want 1 to %d", ErrInvalid, opts.MaxDeliveries, MaxDeliveriesLimit)
	case opts.Delay < 0 || opts.Delay > MaxDelay:
		return "", fmt.Errorf("%w: delay %v: want up to %v", ErrInvalid, opts.Delay, MaxDelay)
	case len(opts.ID) > 256:
		return "", fmt.Errorf("%w: an id of %d bytes, at most 256", ErrInvalid, len(opts.ID))
	case q.cfg.MaxPayload > 0 && len(payload) > q.cfg.MaxPayload:
		return "", fmt.Errorf("%w: a payload of %d bytes, at most %d (a job must fit in a frame)", ErrInvalid, len(payload), q.cfg.MaxPayload)
	}
	if !q.cfg.Conn.IsConnected() {
		return "", fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, q.cfg.Conn.Status())
	}
	id := opts.ID
	if id == "" {
		var b [12]byte
		rand.Read(b[:]) //nolint:errcheck // crypto/rand never fails
		id = "j-" + base64.RawURLEncoding.EncodeToString(b[:])
	}
	msg := nats.NewMsg(queueSubject(name))
	msg.Data = payload
	msg.Header.Set(headerJob, id)
	msg.Header.Set(headerLease, strconv.FormatInt(cmp.Or(opts.Lease, DefaultLease).Milliseconds(), 10))
	msg.Header.Set(headerMaxDeliver, strconv.Itoa(cmp.Or(opts.MaxDeliveries, DefaultMaxDeliveries)))
	if opts.Delay > 0 {
		msg.Header.Set(headerNotBefore, strconv.FormatInt(time.Now().Add(opts.Delay).UnixMilli(), 10))
	}
	var popts []jetstream.PublishOpt
	if opts.ID != "" {
		popts = append(popts, jetstream.WithMsgID(strconv.Itoa(len(name))+":"+name+":"+opts.ID))
	}
	if _, err := q.js.PublishMsg(ctx, msg, popts...); err != nil {
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
			return "", fmt.Errorf("%w: larger than the store takes: %w", ErrInvalid, err)
		}
		if errors.As(err, &api) && api.ErrorCode == codeStoreFailed {
			return "", fmt.Errorf("%w: %w", ErrStoreFull, err)
		}
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return id, nil
}

// Join makes w a worker of queue name, holding at most prefetch jobs at a
// time (0: DefaultPrefetch). Joining again changes the prefetch.
func (q *Queues) Join(ctx context.Context, w gateway.JobWorker, name string, prefetch int) error {
	if !ValidQueue(name) {
		return fmt.Errorf("%w: %q", ErrInvalidQueue, clipName(name))
	}
	if prefetch < 0 || prefetch > MaxPrefetch {
		return fmt.Errorf("%w: prefetch %d: want 1 to %d", ErrInvalid, prefetch, MaxPrefetch)
	}
	prefetch = cmp.Or(prefetch, DefaultPrefetch)
	// The queue's consumer is made outside the lock (a store call); a
	// pool made meanwhile by another Join wins, and this one is stopped.
	var opened *pool
	for {
		q.mu.Lock()
		used, done, err := q.joinLocked(w, name, prefetch, opened)
		q.mu.Unlock()
		if opened != nil && !used {
			opened.stop()
		}
		if done || err != nil {
			return err
		}
		if opened, err = q.openPool(ctx, name); err != nil {
			return err
		}
	}
}

// joinLocked makes w a member of the queue's pool, or changes its
// prefetch; q.mu is held. Without a pool of the queue, it uses opened (and
// says so), or reports that one must be opened (done false).
func (q *Queues) joinLocked(w gateway.JobWorker, name string, prefetch int, opened *pool) (used, done bool, err error) {
	if q.closed {
		return false, true, fmt.Errorf("%w: closed", ErrUnavailable)
	}
	wq := q.workers[w.ID()]
	if m := wq.member(name); m != nil {
		m.pool.setPrefetch(m, prefetch)
		return false, true, nil
	}
	if wq != nil && len(wq.members) >= MaxQueuesPerWorker {
		return false, true, fmt.Errorf("%w: %d", ErrTooManyQueues, MaxQueuesPerWorker)
	}
	p := q.pools[name]
	if p == nil {
		if opened == nil {
			return false, false, nil
		}
		p, used = opened, true
		q.pools[name] = p
	}
	if wq == nil {
		wq = &workerQueues{w: w, members: map[string]*member{}}
		q.workers[w.ID()] = wq
	}
	wq.members[name] = p.add(w, prefetch)
	return used, true, nil
}

// member is w's membership of queue name, or nil.
func (wq *workerQueues) member(name string) *member {
	if wq == nil {
		return nil
	}
	return wq.members[name]
}

// openPool makes the queue's consumer (shared by every node) and starts
// this node's pool of it.
func (q *Queues) openPool(ctx context.Context, name string) (*pool, error) {
	cons, err := q.js.CreateOrUpdateConsumer(ctx, q.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       consumerName(name),
		Description:   "samgw work queue " + name,
		FilterSubject: queueSubject(name),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.NodeTimeout,
		MaxDeliver:    -1,
		MaxAckPending: 100_000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: queue %q: %w", ErrUnavailable, name, err)
	}
	return startPool(q, name, cons), nil
}

// Leave ends w's membership of queue name (the jobs it holds go back at
// once) and reports whether it was a member.
func (q *Queues) LeaveQueue(w gateway.JobWorker, name string) bool {
	q.mu.Lock()
	wq := q.workers[w.ID()]
	var m *member
	if wq != nil {
		m = wq.members[name]
		delete(wq.members, name)
		if len(wq.members) == 0 {
			delete(q.workers, w.ID())
		}
	}
	q.mu.Unlock()
	if m == nil {
		return false
	}
	q.release(m)
	return true
}

// Leave ends every membership of w (gateway.Jobs).
func (q *Queues) Leave(w gateway.JobWorker) {
	q.mu.Lock()
	wq := q.workers[w.ID()]
	delete(q.workers, w.ID())
	q.mu.Unlock()
	if wq == nil {
		return
	}
	for _, m := range wq.members {
		q.release(m)
	}
}

// release removes a member from its pool (its jobs go back) and stops the
// pool when it was the last.
func (q *Queues) release(m *member) {
	p := m.pool
	if empty := p.remove(m); !empty {
		return
	}
	q.mu.Lock()
	if q.pools[p.name] == p && p.idle() {
		delete(q.pools, p.name)
	} else {
		p = nil // a Join came meanwhile
	}
	q.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Answer records a worker's answer to a job it holds (gateway.Jobs).
func (q *Queues) Answer(w gateway.JobWorker, job string, a gateway.JobAnswer) error {
	q.mu.Lock()
	wq := q.workers[w.ID()]
	var members []*member
	if wq != nil {
		for _, m := range wq.members {
			members = append(members, m)
		}
	}
	q.mu.Unlock()
	for _, m := range members {
		if ok, err := m.pool.answer(m, job, a); ok {
			return err
		}
	}
	return fmt.Errorf("%w: %q", gateway.ErrUnknownJob, clipName(job))
}

// QueuesOf returns the queues w is a worker of on this node, sorted.
func (q *Queues) QueuesOf(w gateway.JobWorker) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	wq := q.workers[w.ID()]
	if wq == nil {
		return nil
	}
	names := make([]string, 0, len(wq.members))
	for name := range wq.members {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Stats describes queue name.
func (q *Queues) Stats(ctx context.Context, name string) (QueueStats, error) {
	if !ValidQueue(name) {
		return QueueStats{}, fmt.Errorf("%w: %q", ErrInvalidQueue, clipName(name))
	}
	var st QueueStats
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(queueSubject(name)+".dead"))
	if err != nil {
		return st, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	st.Dead = info.State.Subjects[queueSubject(name)+".dead"]
	cons, err := q.js.Consumer(ctx, q.cfg.Stream, consumerName(name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// No worker ever joined: everything stored is pending.
		info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(queueSubject(name)))
		if err != nil {
			return st, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		st.Pending = info.State.Subjects[queueSubject(name)]
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	st.Pending, st.InFlight = ci.NumPending, uint64(ci.NumAckPending)
	return st, nil
}

// Close stops every pool; the jobs held go back to their queues.
func (q *Queues) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	pools := q.pools
	q.pools, q.workers = map[string]*pool{}, map[string]*workerQueues{}
	q.mu.Unlock()
	for _, p := range pools {
		p.stop()
	}
}

// event reports a job event, if anyone listens.
func (q *Queues) event(e JobEvent) {
	if q.cfg.OnEvent != nil {
		q.cfg.OnEvent(e)
	}
}

func clipName(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}
