package delivery

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/gateway"
)

// pool is this node's workers of one queue. One goroutine (run) pulls jobs
// from the queue's consumer, at most as many as the workers have free
// slots, and hands each to the worker with the most; a timer per job takes
// it back when its lease runs out, and a heartbeat tells JetStream the
// node still holds its jobs (so they go elsewhere only when the node stops
// answering: QueueConfig.NodeTimeout).
type pool struct {
	q      *Queues
	name   string
	cons   jetstream.Consumer
	ctx    context.Context // ends when the pool stops: it cancels a fetch
	cancel context.CancelFunc
	wake   chan struct{} // a slot came free
	done   chan struct{} // run returned

	mu      sync.Mutex
	members []*member
	next    int // round-robin start among equally free members
	beat    *time.Timer
	stopped bool
}

// member is one worker of the pool.
type member struct {
	pool     *pool
	w        gateway.JobWorker
	prefetch int
	held     map[string]*heldJob // guarded by pool.mu
}

// heldJob is a job a worker holds.
type heldJob struct {
	msg        jetstream.Msg
	lease      time.Duration
	timer      *time.Timer
	deliveries uint64
}

func startPool(q *Queues, name string, cons jetstream.Consumer) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{q: q, name: name, cons: cons, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.mu.Lock() // heartbeat reads beat under mu
	p.beat = time.AfterFunc(q.cfg.NodeTimeout/3, p.heartbeat)
	p.mu.Unlock()
	go p.run()
	return p
}

// signal wakes run: a slot may have come free.
func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fetchWait bounds one pull request: a worker that joins while one is out
// waits at most this long for its first job.
const fetchWait = time.Second

// maxFetch bounds the jobs one pull request asks for.
const maxFetch = 256

func (p *pool) run() {
	defer close(p.done)
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	for {
		n := min(p.free(), maxFetch)
		if n == 0 {
			select {
			case <-p.ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		fctx, cancel := context.WithTimeout(p.ctx, fetchWait)
		batch, err := p.cons.Fetch(n, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range batch.Messages() {
				p.take(msg)
			}
		}
		cancel()
		if p.ctx.Err() != nil {
			return
		}
		if err != nil {
			p.q.cfg.Logger.Warn("Work queue: cannot fetch jobs", "queue", p.name, "error", err)
			retry.Reset(250 * time.Millisecond)
			select {
			case <-p.ctx.Done():
				return
			case <-retry.C:
			}
		}
	}
}

// free is how many more jobs the workers can take.
func (p *pool) free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.members {
		n += max(0, m.prefetch-len(m.held))
	}
	return n
}

// take hands a job to a worker, holds it back (delay), or moves it to the
// dead queue (too many deliveries).
func (p *pool) take(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		msg.Term() //nolint:errcheck // not a JetStream message: nothing to deliver
		return
	}
	h := msg.Headers()
	id := h.Get(headerJob)
	if id == "" {
		id = "s-" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	deliveries := meta.NumDelivered
	if nb := h.Get(headerNotBefore); nb != "" {
		if ms, err := strconv.ParseInt(nb, 10, 64); err == nil {
			if wait := time.Until(time.UnixMilli(ms)); wait > 0 {
				msg.NakWithDelay(wait) //nolint:errcheck // it comes back, now or after the node timeout
				return
			}
			if deliveries > 1 {
				deliveries-- // its early arrival was not a delivery to a worker
			}
		}
	}
	if deliveries > uint64(headerInt(h, headerMaxDeliver, DefaultMaxDeliveries)) {
		p.deadLetter(msg, id, meta, deliveries-1)
		return
	}
	lease := time.Duration(headerInt(h, headerLease, int(DefaultLease.Milliseconds()))) * time.Millisecond
	p.mu.Lock()
	m := p.pick()
	if p.stopped || m == nil || m.held[id] != nil {
		p.mu.Unlock()
		msg.Nak() //nolint:errcheck // no worker can take it now: another node, or later
		return
	}
	hj := &heldJob{msg: msg, lease: lease, deliveries: deliveries}
	m.held[id] = hj
	hj.timer = time.AfterFunc(lease, func() { p.expire(m, id, hj) })
	p.mu.Unlock()
	if err := m.w.DeliverJob(p.name, id, msg.Data()); err != nil {
		if p.drop(m, id, hj) {
			msg.Nak() //nolint:errcheck // the worker is gone: back to the queue
			p.signal()
		}
	}
}

// headerInt reads a positive integer header, or def.
func headerInt(h nats.Header, key string, def int) int {
	if n, err := strconv.Atoi(h.Get(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// pick returns the member with the most free slots (round robin among
// equals), or nil; p.mu is held.
func (p *pool) pick() *member {
	var best *member
	bestFree := 0
	for i := range p.members {
		m := p.members[(p.next+i)%len(p.members)]
		if f := m.prefetch - len(m.held); f > bestFree {
			best, bestFree = m, f
		}
	}
	if best != nil {
		p.next++
	}
	return best
}

// drop forgets a job m holds, if it still does.
func (p *pool) drop(m *member, id string, hj *heldJob) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.held[id] != hj {
		return false
	}
	delete(m.held, id)
	hj.timer.Stop()
	return true
}

// expire takes back a job whose lease ran out.
func (p *pool) expire(m *member, id string, hj *heldJob) {
	if !p.drop(m, id, hj) {
		return
	}
	hj.msg.Nak() //nolint:errcheck // without the nak it comes back after the node timeout
	p.signal()
	p.q.event(JobEvent{Event: "expired", Queue: p.name, Job: id, Worker: m.w.ID(), Deliveries: hj.deliveries})
}

// answer applies a worker's answer to a job, if m holds it.
func (p *pool) answer(m *member, id string, a gateway.JobAnswer) (held bool, err error) {
	p.mu.Lock()
	hj := m.held[id]
	if hj == nil {
		p.mu.Unlock()
		return false, nil
	}
	if a == gateway.JobProgress {
		hj.timer.Reset(hj.lease)
	} else {
		delete(m.held, id)
		hj.timer.Stop()
	}
	p.mu.Unlock()
	switch a {
	case gateway.JobDone:
		err = hj.msg.Ack()
		p.signal()
		p.q.event(JobEvent{Event: "acked", Queue: p.name, Job: id, Worker: m.w.ID(), Deliveries: hj.deliveries})
	case gateway.JobRetry:
		err = hj.msg.Nak()
		p.signal()
		p.q.event(JobEvent{Event: "nacked", Queue: p.name, Job: id, Worker: m.w.ID(), Deliveries: hj.deliveries})
	case gateway.JobProgress:
		err = hj.msg.InProgress()
	}
	return true, err
}

// deadLetter moves a job delivered too often to the queue NAME.dead.
func (p *pool) deadLetter(msg jetstream.Msg, id string, meta *jetstream.MsgMetadata, deliveries uint64) {
	out := nats.NewMsg(queueSubject(p.name) + ".dead")
	out.Data = msg.Data()
	for k, v := range msg.Headers() {
		out.Header[k] = v
	}
	out.Header.Del(headerNotBefore)
	out.Header.Set(headerDeadFrom, p.name)
	ctx, cancel := context.WithTimeout(p.ctx, p.q.cfg.Timeout)
	defer cancel()
	// The stream sequence makes a retried move store it once.
	if _, err := p.q.js.PublishMsg(ctx, out, jetstream.WithMsgID("dead:"+p.name+":"+strconv.FormatUint(meta.Sequence.Stream, 10))); err != nil {
		p.q.cfg.Logger.Warn("Work queue: cannot move a job to its dead queue; it comes back", "queue", p.name, "job", id, "error", err)
		msg.NakWithDelay(time.Second) //nolint:errcheck // tried again at its next delivery
		return
	}
	msg.Term() //nolint:errcheck // stored in NAME.dead
	p.q.event(JobEvent{Event: "dead", Queue: p.name, Job: id, Deliveries: deliveries})
}

// heartbeat tells JetStream this node still holds its jobs.
func (p *pool) heartbeat() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	var msgs []jetstream.Msg
	for _, m := range p.members {
		for _, hj := range m.held {
			msgs = append(msgs, hj.msg)
		}
	}
	p.beat.Reset(p.q.cfg.NodeTimeout / 3)
	p.mu.Unlock()
	for _, msg := range msgs {
		msg.InProgress() //nolint:errcheck // a missed beat: the next one, or the node timeout
	}
}

// add makes w a member with prefetch slots.
func (p *pool) add(w gateway.JobWorker, prefetch int) *member {
	m := &member{pool: p, w: w, prefetch: prefetch, held: map[string]*heldJob{}}
	p.mu.Lock()
	p.members = append(p.members, m)
	p.mu.Unlock()
	p.signal()
	return m
}

func (p *pool) setPrefetch(m *member, n int) {
	p.mu.Lock()
	m.prefetch = n
	p.mu.Unlock()
	p.signal()
}

// remove takes m out (its jobs go back at once) and reports whether the
// pool is left without members.
func (p *pool) remove(m *member) (empty bool) {
	p.mu.Lock()
	for i, x := range p.members {
		if x == m {
			p.members = append(p.members[:i], p.members[i+1:]...)
			break
		}
	}
	held := m.held
	m.held = map[string]*heldJob{}
	empty = len(p.members) == 0
	p.mu.Unlock()
	p.giveBack(held)
	return empty
}

// giveBack naks jobs nobody holds any more.
func (p *pool) giveBack(held map[string]*heldJob) {
	for _, hj := range held {
		hj.timer.Stop()
		hj.msg.Nak() //nolint:errcheck // without the nak it comes back after the node timeout
	}
}

func (p *pool) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.members) == 0
}

// stop ends the pool: its jobs go back, run returns.
func (p *pool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.beat.Stop()
	members := p.members
	p.members = nil
	p.mu.Unlock()
	for _, m := range members {
		p.mu.Lock()
		held := m.held
		m.held = map[string]*heldJob{}
		p.mu.Unlock()
		p.giveBack(held)
	}
	p.cancel()
	<-p.done
}
