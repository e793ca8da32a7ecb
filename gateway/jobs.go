package gateway

import (
	"errors"
	"fmt"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Jobs is the work queues' side of the connections that work them (the
// delivery package's Queues): a worker is handed jobs and answers each.
// The gateway knows connections; the queues know jobs and leases.
type Jobs interface {
	// Answer records a worker's answer to a job it holds. An error
	// wrapping ErrUnknownJob means the worker holds no such job.
	Answer(w JobWorker, job string, a JobAnswer) error
	// Leave ends every queue membership of w: the jobs it holds go back
	// to their queues at once.
	Leave(w JobWorker)
}

// JobWorker is where Jobs delivers: a *Conn.
type JobWorker interface {
	ID() string
	// DeliverJob pushes a job: a data frame on route queue carrying the
	// job's id. An error means the worker cannot take it.
	DeliverJob(queue, job string, payload []byte) error
}

// JobAnswer is what a worker says of a job.
type JobAnswer uint8

// Answers: an ack, a nack, a progress frame.
const (
	JobDone     JobAnswer = iota + 1 // done: it leaves the queue
	JobRetry                         // back to the queue for another delivery
	JobProgress                      // still working: the lease starts again
)

func (a JobAnswer) String() string {
	switch a {
	case JobDone:
		return "ack"
	case JobRetry:
		return "nack"
	case JobProgress:
		return "progress"
	}
	return fmt.Sprintf("JobAnswer(%d)", a)
}

// ErrUnknownJob is wrapped by Jobs.Answer's error for a job the worker
// does not hold (never given, answered already, or taken back).
var ErrUnknownJob = errors.New("gateway: no such job held by this connection")

// DeliverJob pushes a job of queue to the connection: a data frame whose
// route is the queue and whose job (and id) is the job's id.
func (c *Conn) DeliverJob(queue, job string, payload []byte) error {
	if err := c.w.enqueueMessage(&protocol.Message{Type: protocol.TypeData, ID: job, Route: queue, Job: job, Payload: payload}); err != nil {
		return fmt.Errorf("deliver job to %s: %w", c.id, err)
	}
	return nil
}

// answerJob handles a worker's ack, nack or progress frame naming a job.
func (c *Conn) answerJob(m *protocol.Message, job string, a JobAnswer) {
	jobs := c.srv.cfg.Jobs
	var err error
	if jobs == nil {
		err = protocol.Errorf(protocol.CodeInvalidMessage, "work queues are off on this server")
	} else if err = jobs.Answer(c, job, a); err != nil {
		if errors.Is(err, ErrUnknownJob) {
			err = protocol.Errorf(protocol.CodeInvalidMessage, "%s of job %q: this connection holds no such job", a, truncateField(job, 64))
		} else {
			c.logger().Warn("Job answer failed", "job", job, "answer", a.String(), "error", err)
			err = protocol.Errorf(protocol.CodeClusterUnavailable, "%s of job %q: the queue store did not take it", a, truncateField(job, 64))
		}
	}
	if err != nil {
		c.w.enqueueError(m.ID, err) //nolint:errcheck // closing
	}
}

// jobFrame handles nack and progress frames, and acks naming a job.
func (c *Conn) jobFrame(m *protocol.Message, a JobAnswer) {
	job, ok, err := protocol.ParseJob(m.Payload)
	if err == nil && !ok {
		err = protocol.Errorf(protocol.CodeInvalidMessage, `a %s needs a payload {"job": ID}`, a)
	}
	if err != nil {
		c.w.enqueueError(m.ID, err) //nolint:errcheck // closing
		return
	}
	c.answerJob(m, job, a)
}

// leaveQueues ends a closed connection's queue memberships.
func (c *Conn) leaveQueues() {
	if jobs := c.srv.cfg.Jobs; jobs != nil {
		jobs.Leave(c)
	}
}
