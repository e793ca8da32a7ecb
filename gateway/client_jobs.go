package gateway

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultJobProgressEvery is how often a job still being handled by
// OnJob is reported in progress: a third of the queues' default lease.
const DefaultJobProgressEvery = 10 * time.Second

// Job is a job of a work queue handed to this client as a worker.
type Job struct {
	Queue   string // the queue (the data frame's route)
	ID      string
	Payload []byte // raw JSON; the handler may keep it
}

// startJob runs OnJob for a job frame on a goroutine of its own (the
// client waits for it in Disconnect): it acks the job when the handler
// returns nil, nacks it on an error, and says progress every
// JobProgressEvery while it runs. ctx ends with the session that received
// it: the server then gives the job back, and an answer would be refused.
func (c *Client) startJob(ctx context.Context, w *wire, m *protocol.Message) {
	job := Job{Queue: m.Route, ID: m.Job, Payload: bytes.Clone(m.Payload)}
	c.jobs.Add(1)
	go func() {
		defer c.jobs.Done()
		every := c.cfg.JobProgressEvery
		if every <= 0 {
			every = DefaultJobProgressEvery
		}
		progress := startBeat(every, func() bool {
			return ctx.Err() == nil && c.answerJob(w, protocol.TypeProgress, job.ID) == nil
		})
		err := c.runJob(ctx, job)
		progress.stop()
		if ctx.Err() != nil {
			return // the session ended: the job went back to its queue
		}
		answer := protocol.TypeAck
		if err != nil {
			answer = protocol.TypeNack
			c.log.Info("Job handler failed; the job goes back to its queue", "queue", job.Queue, "job", job.ID, "error", err)
		}
		c.answerJob(w, answer, job.ID) //nolint:errcheck // the connection is gone: the server gives the job back
	}()
}

// beat calls send every interval until stopped or until send returns
// false.
type beat struct {
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

func startBeat(every time.Duration, send func() bool) *beat {
	b := &beat{}
	b.mu.Lock() // the timer may fire before it is stored
	defer b.mu.Unlock()
	b.timer = time.AfterFunc(every, func() {
		if !send() {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.stopped {
			b.timer.Reset(every)
		}
	})
	return b
}

func (b *beat) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	b.timer.Stop()
}

// runJob calls OnJob, turning a panic into an error (a nack).
func (c *Client) runJob(ctx context.Context, job Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("job handler panicked: %v", r)
		}
	}()
	return c.cfg.OnJob(ctx, job)
}

// answerJob sends an ack, nack or progress frame for job on w.
func (c *Client) answerJob(w *wire, typ protocol.Type, job string) error {
	return w.enqueueMessage(&protocol.Message{Type: typ, Payload: protocol.AppendJobPayload(nil, job)})
}

// AnswerJob answers a job received through OnMessage (without OnJob):
// protocol.TypeAck (done), TypeNack (back to the queue) or TypeProgress
// (its lease starts again). It fails when not connected: the job went back
// to its queue with the connection that received it.
func (c *Client) AnswerJob(typ protocol.Type, job string) error {
	switch typ {
	case protocol.TypeAck, protocol.TypeNack, protocol.TypeProgress:
	default:
		return fmt.Errorf("answer job %q: %q is not ack, nack or progress", job, typ)
	}
	c.mu.Lock()
	w := c.cur
	c.mu.Unlock()
	if w == nil {
		return fmt.Errorf("answer job %q: %w", job, ErrNotConnected)
	}
	return c.answerJob(w, typ, job)
}
